"""OverlayfsDriver's rootfs hooks on the real kernel, called by keyword as pluggy calls them.
The shared RootfsContract covers the behaviour in depth; these name each hook once here, on
this driver, with the `lower` and `container_dir` fixtures (layers always removed)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from warden_framework.config import Settings, settings_from_dict
from warden_framework.container import Container
from warden_framework.errors import WardenError
from warden_overlayfs import kernel
from warden_overlayfs.driver import OverlayfsDriver

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount needs root"),
]

UID = 10009


@pytest.fixture
def settings(lower: Path) -> Settings:
    return settings_from_dict({"server": {"container_rootfs_path": str(lower)},
                               "drivers": {"rootfs": "overlayfs", "disk": None}})


@pytest.fixture
def driver(settings: Settings) -> OverlayfsDriver:
    return OverlayfsDriver(settings)


@pytest.fixture
def container(container_dir: Path) -> Container:
    return Container(id="0123456789c", handle="h", path=container_dir,
                     network=ipaddress.IPv4Network("10.254.0.16/30"), uid=UID)


@pytest.fixture
def mounted(driver, settings, container) -> Container:
    container.records["rootfs"] = driver.setup_fs(container=container, settings=settings)
    return container


def test_hook_setup_fs_mounts_the_rootfs_with_the_containers_etc_files(
        driver, settings, container, lower: Path) -> None:
    record = driver.setup_fs(container=container, settings=settings)
    root = container.rootfs_dir
    assert record == {"lower": str(lower)}
    assert kernel.is_mounted(root)
    assert (root / "data" / "keep").read_text() == "lower keep\n"
    assert (root / "etc" / "hostname").read_text() == f"{container.id}\n"
    assert f"vcap:x:{UID}:{UID}:" in (root / "etc" / "passwd").read_text()
    (root / "data" / "keep").write_text("changed\n")
    assert (lower / "data" / "keep").read_text() == "lower keep\n", "a write reached the lower"


def test_hook_teardown_fs_unmounts_and_removes_the_layers_twice_harmlessly(
        driver, mounted) -> None:
    record = mounted.records["rootfs"]
    driver.teardown_fs(container=mounted, record=record)
    assert kernel.mounts_under(mounted.path) == []
    assert os.listdir(mounted.path) == []
    driver.teardown_fs(container=mounted, record=record)
    assert os.listdir(mounted.path) == []


def test_hook_copy_in_gives_the_files_to_the_container_user_inside_the_root(
        driver, mounted, tmp_path: Path) -> None:
    src = tmp_path / "payload"
    src.write_text("hello\n")
    driver.copy_in(container=mounted, src_path=str(src), dst_path="/../../../tmp/")
    landed = mounted.rootfs_dir / "tmp" / "payload"
    assert landed.read_text() == "hello\n"
    assert (landed.stat().st_uid, landed.stat().st_gid) == (UID, UID)


def test_hook_copy_in_of_a_missing_source_names_it(driver, mounted, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(WardenError, match=f"^copy_in: {missing}: No such file or directory$"):
        driver.copy_in(container=mounted, src_path=str(missing), dst_path="/tmp/")


def test_hook_copy_out_copies_to_the_host_chowned_to_the_owner(driver, mounted,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    driver.copy_out(container=mounted, src_path="/data/keep", dst_path=str(out), owner=None)
    assert (out / "keep").read_text() == "lower keep\n"
    assert (out / "keep").stat().st_uid == 0
    driver.copy_out(container=mounted, src_path="/data", dst_path=str(out), owner="12345:12346")
    copied = out / "data" / "doomed"
    assert copied.read_text() == "lower doomed\n"
    assert (copied.stat().st_uid, copied.stat().st_gid) == (12345, 12346)


def test_hook_copy_out_of_a_missing_path_names_it(driver, mounted, tmp_path: Path) -> None:
    with pytest.raises(WardenError, match="^copy_out: /nope: No such file or directory$"):
        driver.copy_out(container=mounted, src_path="/nope", dst_path=str(tmp_path), owner=None)
