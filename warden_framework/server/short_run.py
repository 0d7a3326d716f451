"""Owns how a Run answers when its job ends at once: the fast path, all of it here.

Most Runs are short (`true`, a config read). For them the round trips between the event loop
and the thread pool cost more than the job: so the worker thread that spawns the job lets the
exec driver wait up to RUN_LINGER for its end (hookspecs.spawn, `job.linger`), reads the info,
builds the RunResponse and writes it straight to the client's socket, from that thread. The
loop writes only what the socket did not take at once. Handing the answer back to the loop
first cost ~0.15 ms a Run (bench/profile.py).

Writing from a worker is safe because a connection's requests are answered one at a time:
nothing else writes to that socket until this answer is out. The worker writes to a duplicate
of the socket's descriptor (a Loan), so the loop closing the connection meanwhile cannot free
the number for reuse under it. A job still running after RUN_LINGER is answered like a Link.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass

from ..container import Container
from ..errors import WardenError
from ..jobs import Job
from ..protocol import frame_message, pb
from ..specs import JobSpec
from .responses import info_response, job_response
from .runtime import Runtime

# How long a Run's worker waits for its job to end before leaving it to the loop.
RUN_LINGER = 0.005


@dataclass(frozen=True)
class RunStarted:
    job: Job
    # Whether the whole RunResponse is written (the job ended within RUN_LINGER); if not, the
    # caller awaits the job and answers as for a Link.
    answered: bool


async def start_run(runtime: Runtime, writer: asyncio.StreamWriter, container: Container,
                    spec: JobSpec) -> RunStarted:
    """Spawn the Run's job; if it ends within RUN_LINGER, answer it completely."""
    loan = Loan.of(writer)
    try:
        job, unsent = await runtime.locked(container, _spawn_and_answer, runtime, loan,
                                           container, spec)
    finally:
        if loan is not None:
            loan.close()
    if unsent is None:
        return RunStarted(job, answered=False)
    if unsent:
        writer.write(unsent)
        await writer.drain()
    return RunStarted(job, answered=True)


def _spawn_and_answer(runtime: Runtime, loan: Loan | None, container: Container,
                      spec: JobSpec) -> tuple[Job, bytes | None]:
    """In the pool: the job, and for one that ended at once the part of its answer the
    socket did not take (None: still running, or an answer the loop's usual path gives)."""
    orchestrator = runtime.orchestrator
    job = orchestrator.spawn(container, spec, id_known=False, linger=RUN_LINGER)
    if not job.done or job.output_limit_hit:
        return job, None
    try:
        info = orchestrator.info(container, full=False)
    except WardenError:  # e.g. stopped meanwhile: the usual path decides
        return job, None
    limit = runtime.settings.server.job_output_limit
    frame = frame_message(job_response(job, pb.RunResponse, info_response(info), limit))
    return job, frame[loan.write_some(frame) if loan is not None else 0:]


class Loan:
    """A duplicate of a client's socket (so the loop closing the connection cannot free its
    number for reuse while a worker writes), written and closed under one lock: a close
    waits for a write under way, and a write after the close writes nothing."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    @classmethod
    def of(cls, writer: asyncio.StreamWriter) -> Loan | None:
        """A loan of `writer`'s socket, or None while the transport still holds bytes (they
        go first) or is closing."""
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return None
        sock = transport.get_extra_info("socket")
        return None if sock is None else cls(os.dup(sock.fileno()))

    def write_some(self, data: bytes) -> int:
        """Write what the non-blocking socket takes now; 0 once closed or on any error, which
        the loop's own write of the rest then meets as for every response."""
        with self._lock:
            if self._fd < 0:
                return 0
            try:
                return os.write(self._fd, data)
            except OSError:
                return 0

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
