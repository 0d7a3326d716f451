"""The configuration a pip or Debian install runs on: shipped in the package, absolute paths,
and shown whole by `warden-server --print-config`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from warden_framework.config import load_settings, settings_from_dict
from warden_framework.server.main import DEFAULT_CONFIG

CHECKOUT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "warden.yml"


def print_config(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "warden_framework.server.main", "--print-config",
                           *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_default_config_is_package_data_with_absolute_paths():
    assert DEFAULT_CONFIG.is_file()
    assert DEFAULT_CONFIG.parent == Path(__import__("warden_framework").__file__).parent / "data"
    settings = load_settings(DEFAULT_CONFIG)
    server = settings.server
    for path in (server.unix_domain_path, server.container_rootfs_path,
                 server.container_depot_path, server.pidfile):
        assert path.startswith("/"), path
    assert server.wshd_path is None  # the exec driver's own binary
    assert settings.frontends == {"warden": {}}


def test_print_config_without_a_config_shows_the_packaged_default_whole():
    text = print_config()
    assert text.startswith(f"# effective configuration of {DEFAULT_CONFIG}")
    shown = settings_from_dict(yaml.safe_load(text))
    assert shown == load_settings(DEFAULT_CONFIG)
    # keys the file leaves out are there with their defaults, and the mode reads as written
    assert "max_connections: 1024" in text and "unix_domain_permissions: 0600" in text


def test_print_config_resolves_a_configs_relative_paths():
    shown = yaml.safe_load(print_config("--config", str(CHECKOUT_CONFIG)))
    rootfs = shown["server"]["container_rootfs_path"]
    assert rootfs == str(CHECKOUT_CONFIG.parent.parent / "build" / "rootfs")


def test_print_config_of_a_bad_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("network: {mtu: x}\n")
    done = subprocess.run([sys.executable, "-m", "warden_framework.server.main", "--print-config",
                           "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "network.mtu: expected an integer" in done.stderr
