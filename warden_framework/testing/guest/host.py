"""What this host offers for a guest: qemu, mkfs.ext4, the newest Debian kernel with its
modules and config, and a static busybox. Nothing here writes anything."""

from __future__ import annotations

import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from . import initramfs

TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
QBOOT = Path("/usr/share/qemu/qboot.rom")  # a firmware that boots in ms instead of SeaBIOS's s


class GuestUnavailable(Exception):
    """This host cannot build or boot a guest; the text says what is missing and how to get it."""


@dataclass(frozen=True)
class Host:
    qemu: str
    mkfs: str
    kernel: Path
    config: Path
    modules: Path
    busybox: Path
    bios: Path | None


def find_host() -> Host:
    """What this host boots the guest with; GuestUnavailable names the first thing missing."""
    if os.environ.get("WARDEN_GUEST") == "1":
        raise GuestUnavailable("already inside the guest: a nested emulated guest takes minutes")
    if os.geteuid() != 0:
        raise GuestUnavailable("needs root: qemu exports / over 9p with the host's owners")
    qemu = _tool("qemu-system-x86_64", "qemu-system-x86")
    mkfs = _tool("mkfs.ext4", "e2fsprogs")
    kernels = sorted(Path("/boot").glob("vmlinuz-*-amd64"), key=_version_key)
    if not kernels:
        raise GuestUnavailable("no Debian kernel /boot/vmlinuz-*-amd64 "
                               "(apt-get install linux-image-amd64)")
    image = kernels[-1]
    release = image.name.removeprefix("vmlinuz-")
    if not os.access(image, os.R_OK):
        raise GuestUnavailable(f"cannot read {image}")
    modules = Path("/lib/modules") / release
    if not (modules / "modules.dep").is_file():
        raise GuestUnavailable(f"no {modules}/modules.dep for {image}")
    busybox = Path(_tool("busybox", "busybox-static"))
    if _needs_loader(busybox.resolve()):
        raise GuestUnavailable(f"{busybox} is dynamically linked (apt-get install busybox-static)")
    try:
        initramfs.module_paths(modules)
    except initramfs.InitramfsError as exc:
        raise GuestUnavailable(str(exc)) from None
    return Host(qemu, mkfs, image, Path("/boot") / f"config-{release}", modules, busybox,
                QBOOT if QBOOT.is_file() else None)


def skip_reason() -> str | None:
    """Why this host cannot run a guest, or None when it can."""
    try:
        find_host()
    except GuestUnavailable as exc:
        return str(exc)
    return None


def _tool(name: str, package: str) -> str:
    found = shutil.which(name, path=TOOL_PATH)
    if found is None:
        raise GuestUnavailable(f"{name} is not installed (apt-get install {package})")
    return found


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name))


def _needs_loader(path: Path) -> bool:
    """Whether `path` is anything but a 64-bit ELF file without a loader (PT_INTERP)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:5] != b"\x7fELF\x02":
            return True
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == 3 for i in range(phnum))
