"""The guest's kernel image. Debian's bzImage inflates itself, which under TCG emulation takes
about 3 s of every boot; the host unpacks the ELF vmlinux inside it (0.6 s) and qemu enters
that directly through its PVH entry point. Kernels without PVH or with a payload format this
module does not know are booted as they are."""

from __future__ import annotations

import lzma
import zlib
from pathlib import Path

# Each decompressor stops at the end of its stream: the bzImage's trailer after it is ignored.
_PAYLOADS = ((b"\xfd7zXZ\x00", lambda data: lzma.LZMADecompressor().decompress(data)),
             (b"\x1f\x8b\x08", lambda data: zlib.decompressobj(wbits=31).decompress(data)))


def bootable_image(vmlinuz: Path, config: Path, dest: Path) -> Path:
    """The image qemu should boot: `dest` holding the unpacked vmlinux, or `vmlinuz` itself."""
    if "CONFIG_PVH=y" not in _read_text(config).splitlines():
        return vmlinuz
    data = vmlinuz.read_bytes()
    for magic, inflate in _PAYLOADS:
        start = data.find(magic)
        if start < 0:
            continue
        try:
            elf = inflate(data[start:])
        except (lzma.LZMAError, zlib.error):
            continue
        if elf[:4] == b"\x7fELF":
            dest.write_bytes(elf)
            return dest
    return vmlinuz


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""

