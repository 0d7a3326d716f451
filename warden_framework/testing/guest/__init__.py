"""Run pytest inside a throw-away qemu guest booted with Debian's stock kernel on a pure
cgroup v2 hierarchy (`cgroup_no_v1=all`), for what this host's v1-bound controllers cannot
exercise. The guest's root is the host's own, read-only under a RAM overlay, so the venv,
wshd and the default rootfs are there unchanged; /tmp and the rootfs sit on ext4 so idmapped
mounts work. Tests inside see WARDEN_GUEST=1.

    .venv/bin/python -m warden_framework.testing.guest [--memory MB] [--cpus N] [--timeout S] \\
        -- PYTEST ARGS
"""

from .host import GuestUnavailable, skip_reason
from .runner import GuestError, GuestRun, GuestTimeout, run_pytest

__all__ = ["GuestError", "GuestRun", "GuestTimeout", "GuestUnavailable", "run_pytest",
           "skip_reason"]
