"""snapshot.json: written atomically (write, fsync, rename) on every state change; read at start."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

SNAPSHOT = "snapshot.json"


def write_snapshot(container_dir: Path, data: dict) -> None:
    path = container_dir / SNAPSHOT
    tmp = container_dir / f".{SNAPSHOT}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    dir_fd = os.open(container_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_snapshot(container_dir: Path) -> dict | None:
    """The snapshot, or None when it is missing or unreadable (the container is then destroyed)."""
    try:
        with open(container_dir / SNAPSHOT) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "id" in data and "state" in data else None
