"""Drivers are chosen by name through stevedore: unknown names list the installed ones, and a
third-party distribution is selected by config with no core change."""

import sys
import textwrap

import pytest
from stevedore.extension import ExtensionManager

from warden_framework.config import settings_from_dict
from warden_framework.drivers import load_drivers
from warden_framework.errors import ConfigError
from warden_framework.plugins import Hooks, build_plugin_manager
from warden_framework.testing.fakes import FAKE_DRIVERS, FakeRootfs


def test_unknown_driver_lists_installed_names():
    settings = settings_from_dict({"drivers": {"rootfs": "nosuchfs"}})
    with pytest.raises(ConfigError, match=r"drivers\.rootfs: no driver named 'nosuchfs' in "
                                          r"warden\.drivers\.rootfs \(installed: .*\)"):
        load_drivers(settings, overrides={k: v for k, v in FAKE_DRIVERS.items() if k != "rootfs"})


@pytest.fixture
def third_party_dist(tmp_path, monkeypatch):
    """A throwaway distribution on sys.path with a `warden.drivers.rootfs` entry point."""
    pkg = tmp_path / "acme_rootfs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from warden_framework import hookimpl
        from warden_framework.testing.fakes import FakeRootfs

        class AcmeRootfsDriver(FakeRootfs):
            @hookimpl
            def setup_fs(self, container, settings):
                container.rootfs_dir.mkdir()
                return {"made_by": "acme"}
    """))
    info = tmp_path / "acme_rootfs-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rootfs\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[warden.drivers.rootfs]\nacme = acme_rootfs:AcmeRootfsDriver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # stevedore caches each namespace's entry points per process; start from a fresh scan
    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
    yield
    sys.modules.pop("acme_rootfs", None)


def test_third_party_driver_selected_by_config(third_party_dist, tmp_path):
    settings = settings_from_dict({"drivers": {"rootfs": "acme"},
                                   "server": {"container_depot_path": str(tmp_path / "d")}})
    others = {k: v for k, v in FAKE_DRIVERS.items() if k not in ("rootfs", "disk")}
    drivers = load_drivers(settings, overrides=others)
    assert type(drivers["rootfs"]).__name__ == "AcmeRootfsDriver"
    hooks = Hooks(build_plugin_manager(drivers, load_entry_points=False), set(drivers))
    from warden_framework.container import Container
    c = Container(id="x", handle="x", path=tmp_path)
    assert hooks.setup_fs(c, settings) == {"made_by": "acme"}


def test_unmarked_override_is_refused(tmp_path):
    class Sloppy(FakeRootfs):
        def copy_in(self, container, src_path, dst_path):  # forgot @hookimpl
            return None

    settings = settings_from_dict({})
    drivers = load_drivers(settings, overrides={**FAKE_DRIVERS, "rootfs": Sloppy})
    with pytest.raises(ConfigError, match=r"Sloppy\.copy_in is not marked with @hookimpl"):
        build_plugin_manager(drivers, load_entry_points=False)


def test_second_owner_of_a_subsystem_hook_is_refused():
    from warden_framework import hookimpl

    class Intruder:
        @hookimpl
        def setup_net(self, container, settings):
            return {}

    drivers = load_drivers(settings_from_dict({}), overrides=FAKE_DRIVERS)
    with pytest.raises(ConfigError, match=r"hook setup_net: must have exactly one implementation"):
        build_plugin_manager(drivers, extra=[Intruder()], load_entry_points=False)
