"""The guest's initramfs: static busybox, the modules that mount the host's root over virtio-9p
and the scratch disk (with every dependency modules.dep names, in load order) and /init
(initramfs_init.sh), which builds the guest's mount table and hands over to init.sh."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# What the initramfs loads to mount the shared root and the scratch disk; the rest (veth,
# iptables, ...) the kernel loads on demand with modprobe from the shared /lib/modules.
# crc32c_generic is ext4's soft dependency ("crypto-crc32c"), which modules.dep does not list.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_blk", "crc32c_generic",
                "ext4")
INIT = Path(__file__).with_name("initramfs_init.sh")


class InitramfsError(Exception):
    """The kernel's modules cannot go into the initramfs (names the module and why)."""


def module_paths(modules_dir: Path, wanted: tuple[str, ...] = ROOT_MODULES) -> list[Path]:
    """`wanted` and their dependencies as files under `modules_dir`, each after its deps.
    Compressed modules are refused: busybox insmod reads plain .ko files only."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, needs = line.partition(":")
        deps[path] = needs.split()
    by_name = {_module_name(path): path for path in deps}
    builtin = _builtin_names(modules_dir)
    ordered: list[str] = []

    def visit(path: str) -> None:
        if path not in ordered:
            for dep in deps[path]:
                visit(dep)
            ordered.append(path)

    for name in wanted:
        if name in builtin:
            continue
        if name not in by_name:
            raise InitramfsError(f"module {name} is neither in {modules_dir}/modules.dep "
                                 "nor built in")
        visit(by_name[name])
    for path in ordered:
        if not path.endswith(".ko"):
            raise InitramfsError(f"{modules_dir / path} is compressed; busybox insmod reads "
                                 "plain .ko files only")
    return [modules_dir / path for path in ordered]


def _module_name(path: str) -> str:
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def _builtin_names(modules_dir: Path) -> set[str]:
    builtin = modules_dir / "modules.builtin"
    if not builtin.exists():
        return set()
    return {_module_name(line) for line in builtin.read_text().split()}


def build(dest: Path, busybox: Path, modules_dir: Path) -> None:
    """Write an uncompressed newc initramfs to `dest` (the kernel need not inflate it)."""
    modules = module_paths(modules_dir)
    archive = _Newc()
    for directory in ("bin", "dev", "proc", "sys", "lib", "lib/modules", "newroot"):
        archive.add(directory, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes())
    archive.add("init", stat.S_IFREG | 0o755, INIT.read_bytes())
    for module in modules:
        archive.add(f"lib/modules/{module.name}", stat.S_IFREG | 0o644, module.read_bytes())
    order = "".join(f"{module.name}\n" for module in modules).encode()
    archive.add("lib/modules/load.order", stat.S_IFREG | 0o644, order)
    dest.write_bytes(archive.finish())


class _Newc:
    """The "new ASCII" cpio format the kernel unpacks (Documentation/driver-api/early-userspace)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(encoded), 0)
        self.ino += 1
        header = b"070701" + b"".join(b"%08x" % field for field in fields)
        self.parts += [header, encoded, _pad(len(header) + len(encoded)), data, _pad(len(data))]

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self.parts)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)
