"""Whether this kernel lets root make a user namespace: checked once at start-up, so a host
that cannot have them stops the server with the reason instead of failing every create."""

from __future__ import annotations

import ctypes
import os

CLONE_NEWUSER = 0x10000000


def user_namespace_refusal() -> str | None:
    """None if a child can unshare a user namespace, else the kernel's reason."""
    pid = os.fork()
    if pid == 0:  # the child only makes the call and reports its errno as the exit status
        libc = ctypes.CDLL(None, use_errno=True)
        os._exit(0 if libc.unshare(CLONE_NEWUSER) == 0 else ctypes.get_errno() or 255)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    return os.strerror(code) if code > 0 else f"the probe died of signal {-code}"
