"""Fixtures for the aufs plugin's tests: a recording fake of kernel.py (this kernel has no
aufs), a small lower rootfs, and a container dir whose layers are always removed."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_aufs import kernel, layers
from warden_framework.testing.contract import make_lower


class RecordingKernel:
    """Stands in for the mount calls of warden_aufs.kernel.

    Records every mount(2) and umount2(2) asked for in `calls`, in order, and keeps the mounted
    targets so is_mounted / mounts_under answer as the kernel would. Nothing is mounted for
    real: the mount point stays a plain directory, so what the driver writes "through the
    mount" lands there. `fail_mount` makes the next mount fail with that errno; `listing_at_
    unmount` is the parent dir's listing at each unmount, to check nothing was removed first.
    """

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.mounted: list[str] = []
        self.fail_mount: int | None = None
        self.listing_at_unmount: dict[str, list[str]] = {}

    def mount(self, source: str, target: Path, fstype: str, flags: int, data: bytes) -> None:
        self.calls.append(("mount", source, str(target), fstype, flags, data))
        if self.fail_mount is not None:
            err, self.fail_mount = self.fail_mount, None
            hint = f"the kernel has no {fstype} filesystem" if err == errno.ENODEV else ""
            raise kernel.MountError(err, f"mount {fstype} on", target, hint)
        self.mounted.append(os.path.realpath(target))

    def unmount(self, target: Path) -> None:
        real = os.path.realpath(target)
        if real not in self.mounted:
            return
        self.calls.append(("unmount", str(target)))
        self.listing_at_unmount[str(target)] = sorted(os.listdir(os.path.dirname(real)))
        self.mounted.remove(real)

    def is_mounted(self, target: Path) -> bool:
        return os.path.realpath(target) in self.mounted

    def mounts_under(self, *targets: Path) -> list[str]:
        tops = [os.path.realpath(target) for target in targets]
        found = {p for p in self.mounted
                 if any(p == top or p.startswith(top.rstrip("/") + "/") for top in tops)}
        return sorted(found, key=lambda p: p.count("/"), reverse=True)

    def mounts(self) -> list[tuple]:
        return [c for c in self.calls if c[0] == "mount"]


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch) -> RecordingKernel:
    fake = RecordingKernel()
    for name in ("mount", "unmount", "is_mounted", "mounts_under"):
        monkeypatch.setattr(kernel, name, getattr(fake, name))
    return fake


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    """make_lower with a 0750 root, so tests see the upper branch take the lower's mode."""
    root = make_lower(tmp_path / "lower")
    os.chmod(root, 0o750)
    return root


@pytest.fixture
def container_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty container dir; its layers are unmounted and removed at teardown."""
    c = tmp_path / f"c-{os.getpid()}"
    c.mkdir()
    yield c
    layers.remove_layers(c)
