"""Which host paths a create's bind mounts may take as their source (server policy).

Only sources under `server.bind_mount_allowed_paths` are accepted, judged after every symlink
is resolved, and the resolved path is what the exec driver mounts: a source that is a symlink
to /etc is refused like /etc itself. A source that does not exist is left to the rootfs
driver's check, so the client gets Warden's own text for it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .errors import WardenError


def is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def allowed_binds(binds: Sequence[dict], allowed: Sequence[str]) -> list[dict]:
    """`binds` with each source resolved; a WardenError naming the first source outside
    every allowed prefix."""
    prefixes = [os.path.realpath(p) for p in allowed]
    checked = []
    for bind in binds:
        source = os.path.realpath(bind["src"])
        if os.path.exists(source) and not any(is_under(source, prefix) for prefix in prefixes):
            where = ", ".join(allowed) if allowed else "none are allowed"
            raise WardenError(f"bind mount source {bind['src']} is not under an allowed path "
                              f"({where}: server.bind_mount_allowed_paths)")
        checked.append({**bind, "src": source})
    return checked
