"""Fixtures for the overlayfs plugin's tests: a small lower rootfs and a container dir whose
layers are always removed, even when the test fails."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_framework.testing.contract import make_lower
from warden_overlayfs import kernel, layers


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    return make_lower(tmp_path / "lower")


@pytest.fixture
def container_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty container dir; its layers are unmounted and removed at teardown."""
    c = tmp_path / f"c-{os.getpid()}"
    c.mkdir()
    yield c
    layers.remove_layers(c)
    assert not kernel.mounts_under(c), f"mounts left under {c}"
