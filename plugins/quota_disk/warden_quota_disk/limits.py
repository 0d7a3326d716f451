"""LimitDisk arithmetic shared by both drivers: Warden's field aliases and their precedence,
bytes to 1 KiB quota blocks, range checks, and the twelve response fields (facts §5.8).
Pure: no kernel, no settings."""

from __future__ import annotations

from dataclasses import dataclass

from warden_framework.errors import WardenError

BLOCK_SIZE = 1024  # quota blocks are 1 KiB (QIF_DQBLKSIZE); Warden fixes it too (facts §5.8)
MAX_VALUE = 2**63  # largest limit accepted, in bytes for byte/block fields, in inodes otherwise

# Request field -> QuotaLimits attribute, in Warden's precedence: later entries win.
BYTE_FIELDS = (("byte_limit", "block_hard"), ("byte", "block_hard"),
               ("byte_soft", "block_soft"), ("byte_hard", "block_hard"))
BLOCK_FIELDS = (("block_limit", "block_hard"), ("block", "block_hard"),
                ("block_soft", "block_soft"), ("block_hard", "block_hard"))
INODE_FIELDS = (("inode_limit", "inode_hard"), ("inode", "inode_hard"),
                ("inode_soft", "inode_soft"), ("inode_hard", "inode_hard"))
REQUEST_FIELDS = tuple(name for name, _ in BYTE_FIELDS + BLOCK_FIELDS + INODE_FIELDS)


@dataclass(frozen=True)
class QuotaLimits:
    """A user's (or qgroup's) limits: blocks of BLOCK_SIZE bytes and inodes; 0 is unlimited."""

    block_soft: int = 0
    block_hard: int = 0
    inode_soft: int = 0
    inode_hard: int = 0


def bytes_to_blocks(value: int, block_size: int = BLOCK_SIZE) -> int:
    """Bytes to quota blocks, rounding up, so a byte limit is never looser than asked."""
    return -(-value // block_size)


def merge_limits(current: QuotaLimits, request: dict, block_size: int = BLOCK_SIZE) -> QuotaLimits:
    """Apply the request's set fields over `current` in Warden's precedence.

    Byte fields first (converted to blocks), then block fields, then inode fields; a later
    field wins over an earlier one aimed at the same limit; limits not named stay as they are.
    Raises WardenError for an unknown field or a value that is negative, not an integer or
    above MAX_VALUE, before anything is changed.
    """
    check_request(request, block_size)
    values = {
        "block_soft": current.block_soft, "block_hard": current.block_hard,
        "inode_soft": current.inode_soft, "inode_hard": current.inode_hard,
    }
    for name, target in BYTE_FIELDS:
        if name in request:
            values[target] = bytes_to_blocks(request[name], block_size)
    for name, target in BLOCK_FIELDS + INODE_FIELDS:
        if name in request:
            values[target] = request[name]
    return QuotaLimits(**values)


def check_request(request: dict, block_size: int = BLOCK_SIZE) -> None:
    """Refuse unknown fields and values a quota cannot hold, naming the field."""
    for name, value in request.items():
        if name not in REQUEST_FIELDS:
            raise WardenError(f"limit_disk: unknown field {name!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise WardenError(f"limit_disk: {name} must be an integer, got {value!r}")
        if value < 0:
            raise WardenError(f"limit_disk: {name} {value} is negative")
        if _in_bytes(name, value, block_size) > MAX_VALUE:
            unit = "blocks" if name.startswith("block") else "bytes" if name.startswith("byte") else "inodes"
            limit = MAX_VALUE // block_size if unit == "blocks" else MAX_VALUE
            raise WardenError(f"limit_disk: {name} {value} is too large (at most {limit} {unit})")


def _in_bytes(name: str, value: int, block_size: int) -> int:
    return value * block_size if name.startswith("block") else value


def response_fields(limits: QuotaLimits, block_size: int = BLOCK_SIZE) -> dict[str, int]:
    """The twelve LimitDiskResponse fields: every alias filled from the four limits."""
    return {
        "block_limit": limits.block_hard, "block": limits.block_hard,
        "block_soft": limits.block_soft, "block_hard": limits.block_hard,
        "byte_limit": limits.block_hard * block_size, "byte": limits.block_hard * block_size,
        "byte_soft": limits.block_soft * block_size, "byte_hard": limits.block_hard * block_size,
        "inode_limit": limits.inode_hard, "inode": limits.inode_hard,
        "inode_soft": limits.inode_soft, "inode_hard": limits.inode_hard,
    }
