"""Process-level concerns: structured logging, pidfile, RLIMIT_NOFILE."""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from pathlib import Path

NOFILE_TARGET = 32768
_LEVELS = {"debug2": logging.DEBUG, "debug1": logging.DEBUG, "debug": logging.DEBUG,
           "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra` fields."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 6), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, file: str | None) -> None:
    handler: logging.Handler = logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))


def raise_nofile_limit(target: int = NOFILE_TARGET) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= target:
        return soft
    new_hard = max(hard, target) if os.geteuid() == 0 else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, new_hard), new_hard))
    except (ValueError, OSError):
        return soft
    return min(target, new_hard)


class Pidfile:
    """Refuses to start when a live process owns the pidfile; removed on exit."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def acquire(self) -> None:
        try:
            other = int(self.path.read_text().strip())
        except (OSError, ValueError):
            other = None
        if other and other != os.getpid() and _alive(other):
            raise RuntimeError(f"pidfile {self.path}: process {other} is running")
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{time.monotonic_ns()}")
        tmp.write_text(f"{os.getpid()}\n")
        os.rename(tmp, self.path)

    def release(self) -> None:
        try:
            if int(self.path.read_text().strip()) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
