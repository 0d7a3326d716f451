"""(9) A restart with many live containers: how long the server is away. The containers are
created as in (4); the server drains (SIGUSR2: containers and jobs stay), starts again and
recovers every container; the clock runs from the start until it answers and lists them
all, and `run true` in the last one shows it can work in them again."""

from __future__ import annotations

import time

from warden_framework.client import Client
from warden_framework.testing.process import ServerProcess

from .scale import create_all, destroy_all, wait_cleaned

START_TIMEOUT = 900.0


def run(server: ServerProcess, count: int, clients: int) -> dict:
    """Create `count` containers, drain, restart, time the way back; destroy them all."""
    handles, _, errors = create_all(server.socket, count, clients)
    result: dict = {"containers": count, "created": len(handles), "errors": len(errors),
                    "error_texts": sorted(set(errors))[:10]}
    try:
        t0 = time.monotonic()
        result["drain_exit"] = server.drain()
        t1 = time.monotonic()
        server.start(timeout=START_TIMEOUT)
        with Client(server.socket) as client:
            result["listed"] = len(client.list().handles)
            t2 = time.monotonic()
            result["run_exit"] = client.run(handle=handles[-1], script=b"true").exit_status \
                if handles else None
        t3 = time.monotonic()
        result.update(drain_s=t1 - t0, start_s=t2 - t1, first_run_ms=(t3 - t2) * 1000)
    finally:
        result["destroy_errors"] = len(destroy_all(server.socket, handles, clients))
        result["cleaned"] = wait_cleaned(server.socket, server.settings.depot)
    return result

