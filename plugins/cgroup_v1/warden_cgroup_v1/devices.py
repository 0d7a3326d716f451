"""The devices controller: a container may use only a short whitelist of character devices.

Whitelist after warden-facts §10.9, widened to rwm and to full (1:7); without the host's
console (5:1) and fuse (10:229), which wshd no longer puts in a container's /dev.
"""

from pathlib import Path

from . import kernel
from .errors import CgroupError

DEVICES_ALLOW = "devices.allow"
DEVICES_DENY = "devices.deny"
DEVICES_LIST = "devices.list"

DENY_ALL = "a"
ALLOWED_DEVICES = (
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c 5:0 rwm",  # tty
    "c 5:2 rwm",  # ptmx
    "c 136:* rwm",  # pts/*
)


def restrict(path: Path) -> None:
    """Deny every device to the cgroup at `path`, then allow ALLOWED_DEVICES."""
    _write(path / DEVICES_DENY, DENY_ALL)
    for rule in ALLOWED_DEVICES:
        _write(path / DEVICES_ALLOW, rule)


def allowed(path: Path) -> list[str]:
    """The rules the kernel now applies (devices.list), one per line."""
    return kernel.read_control(path / DEVICES_LIST).splitlines()


def _write(control: Path, rule: str) -> None:
    try:
        kernel.write_control(control, rule)
    except OSError as e:
        raise CgroupError(f"write {rule!r} to {control}: {e.strerror}") from e
