"""The devices controller: a container may use only a short whitelist of character devices
(cgroupfs.ALLOWED_DEVICES, shared with the cgroup_v2 driver)."""

from pathlib import Path

from warden_framework.cgroupfs import ALLOWED_DEVICES

from . import kernel
from .errors import CgroupError

DEVICES_ALLOW = "devices.allow"
DEVICES_DENY = "devices.deny"
DEVICES_LIST = "devices.list"

DENY_ALL = "a"


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
