"""Garden's Run, Attach and their stdout/stderr streams (garden-api.md §5), and the routes of
files.py (StreamIn/StreamOut, which run processes too).

A Run spawns a job through the orchestrator (named before the answer, so a client may Attach
after a restart), then owns the hijacked control socket: the first message names the process
and a stream, client messages become stdin, window sizes and signals, and the exit status
ends it. Once an exit status reached a client the process is forgotten, as Garden forgets a
waited one; a process that ends while nobody is attached keeps its exit status for the next
Attach. A client that goes away never kills its process; the last one leaving ends a pipe's
input, as Garden's server closes the stdin of a process whose client left (a TTY's input stays
open for the next Attach: ^D would end an interactive shell).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from typing import Any

from warden_framework.container import Container
from warden_framework.errors import ProcessNotFound, WardenError
from warden_framework.jobs import Job
from warden_framework.specs import TTYSize

from . import files
from .http import Hijack, Request, Router
from .process_spec import INTERNAL_PREFIX, job_spec, tty_size
from .stdin import StdinPipe
from .streams import Streams, follow

log = logging.getLogger(__name__)

SIGNALS = {0: signal.SIGTERM, 1: signal.SIGKILL}  # Garden's terminate and kill
MAX_MESSAGE = 16 << 20  # one control message (a stdin chunk, JSON-escaped)


def register(router: Router, garden) -> None:
    processes = Processes(garden)
    router.add("POST", "/containers/:handle/processes", processes.run)
    router.add("GET", "/containers/:handle/processes/:pid", processes.attach)
    for name in ("stdout", "stderr"):
        router.add("GET", f"/containers/:handle/processes/:pid/attaches/:streamid/{name}",
                   processes.output_route(name))
    files.register(router, garden)


def process_ids(container: Container) -> list[str]:
    """The process IDs Garden's Info lists: the container's running jobs, without the ones
    StreamIn and StreamOut run."""
    return [job.process_id for job in list(container.jobs.values())
            if not job.done and not job.process_id.startswith(INTERNAL_PREFIX)]


class ProcessIO:
    """What every client of one process shares: its stdin (the pipe takes over the job's
    descriptor) and how many control streams are open."""

    def __init__(self, key: tuple[str, int], job: Job) -> None:
        self.key, self.job = key, job
        fd, job.stdin_fd = job.stdin_fd, None
        self.stdin = StdinPipe(fd, tty=job.tty is not None) if fd is not None else None
        self.clients = 0


class Processes:
    def __init__(self, garden) -> None:
        self.garden = garden
        self.runtime = garden.runtime
        self.orch = garden.runtime.orchestrator
        self.streams = Streams(self.runtime.tasks.run)
        self._io: dict[tuple[str, int], ProcessIO] = {}

    # -- routes ----------------------------------------------------------------------------
    async def run(self, request: Request) -> Hijack:
        body = await request.json()
        handle = request.params["handle"]
        container = self.garden.container(handle)
        spec = job_spec(body)
        with self.garden.holding(handle):
            job = await self.runtime.locked(container, self.orch.spawn, container, spec, True)
        self.runtime.jobs.started(container, job)
        return self._control_stream(container, job, 201, at_end=False)

    async def attach(self, request: Request) -> Hijack:
        container = self.garden.container(request.params["handle"])
        process_id = request.params["pid"]
        if process_id.startswith(INTERNAL_PREFIX):
            raise ProcessNotFound(process_id)
        job = self.orch.find_process(container, process_id)
        return self._control_stream(container, job, 200, at_end=True)

    def output_route(self, name: str):
        async def output(request: Request) -> Hijack:
            """Unknown stream: 200 and closed at once, as Garden's server answers."""
            taken = self.streams.take(request.params["streamid"], name)
            return Hijack(lambda reader, writer: _pump(taken, reader, writer), 200, None)
        return output

    # -- the control stream ----------------------------------------------------------------
    def _control_stream(self, container: Container, job: Job, status: int, at_end: bool) -> Hijack:
        io = self._io_for(container, job)
        stream_id = self.streams.open(job, at_end)

        async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            io.clients += 1
            try:
                with self.garden.holding(container.handle):
                    writer.write(_line({"process_id": job.process_id, "stream_id": stream_id}))
                    await writer.drain()
                    await self._until_exit(reader, writer, container, job, io)
            except ConnectionError as exc:
                log.debug("process %s: control stream ended: %s", job.process_id, exc)
            finally:
                self._release(io)
        return Hijack(control, status, "application/json")

    async def _until_exit(self, reader, writer, container: Container, job: Job, io: ProcessIO) -> None:
        """Serve client messages until the process ends (then send its exit status and forget
        it) or the client goes away (then leave it running)."""
        inputs = asyncio.ensure_future(self._read_messages(reader, container, job, io))
        ended = asyncio.ensure_future(job.wait())
        try:
            await asyncio.wait({inputs, ended}, return_when=asyncio.FIRST_COMPLETED)
            if inputs.done() or writer.is_closing():
                return
            writer.write(_line({"process_id": job.process_id, "exit_status": job.exit_status}))
            self.orch.forget_job(container, job)  # before the client can see the status
            await writer.drain()
        finally:
            for task in (inputs, ended):
                task.cancel()
            for result in await asyncio.gather(inputs, ended, return_exceptions=True):
                if isinstance(result, Exception):
                    log.warning("process %s: control stream failed: %r", job.process_id, result)

    async def _read_messages(self, reader, container: Container, job: Job, io: ProcessIO) -> None:
        """Until the client closes the socket. After a malformed message the rest is ignored
        and stdin ends, as Garden's server stops reading there."""
        ignoring = False
        while line := await _read_line(reader):
            if ignoring or not line.strip():
                continue
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise TypeError("not an object")
            except (ValueError, TypeError) as exc:
                log.warning("process %s: malformed control message (%s): ignoring the rest",
                            job.process_id, exc)
                ignoring = True
                if io.stdin is not None:
                    io.stdin.end()
                continue
            await self._on_message(container, job, io, message)

    async def _on_message(self, container: Container, job: Job, io: ProcessIO, message: dict) -> None:
        """garden-api.md §5.5, in the Go server's order; presence, not truth: 0 is a value."""
        if message.get("tty") is not None:
            await self._resize(container, job, message["tty"])
        elif message.get("source") is not None:
            data = message.get("data")
            if io.stdin is None:
                log.debug("process %s: no stdin to write (spawned before a restart)", job.process_id)
            elif data is None:
                io.stdin.end()
            elif isinstance(data, str):
                await io.stdin.write(data.encode("utf-8", "surrogatepass"))
        elif message.get("signal") is not None:
            signo = SIGNALS.get(message["signal"])
            if signo is None:
                log.warning("process %s: unknown signal %r ignored", job.process_id, message["signal"])
                return
            await self._call(container, job, "signal", self.orch.signal_process, container, job, signo)
        else:
            log.info("process %s: unknown control message ignored: %.200s", job.process_id, message)

    async def _resize(self, container: Container, job: Job, tty: Any) -> None:
        if not isinstance(tty, dict) or not tty.get("window_size") or job.tty is None:
            return  # Garden ignores a size without window_size, or for a process without a TTY
        rows, columns = job.tty
        try:
            size = tty_size(tty, current=TTYSize(rows=rows, columns=columns))
        except WardenError as exc:
            log.warning("process %s: %s", job.process_id, exc)
            return
        await self._call(container, job, "window size", self.orch.resize_tty, container, job,
                         size.rows, size.columns)

    async def _call(self, container: Container, job: Job, what: str, fn, *args) -> None:
        """A client's signal or window size: a failure is logged, as the protocol has no
        answer to these messages."""
        try:
            await self.runtime.locked(container, fn, *args)
        except WardenError as exc:
            log.warning("process %s: %s failed: %s", job.process_id, what, exc)

    # -- shared state of a process's clients ---------------------------------------------------
    def _io_for(self, container: Container, job: Job) -> ProcessIO:
        key = (container.id, job.id)
        io = self._io.get(key)
        if io is None:
            io = self._io[key] = ProcessIO(key, job)
            self.runtime.tasks.run(self._at_end(io))
        return io

    async def _at_end(self, io: ProcessIO) -> None:
        try:
            await io.job.wait()
        finally:
            if io.stdin is not None:
                io.stdin.abort()
            if io.clients == 0:
                self._io.pop(io.key, None)

    def _release(self, io: ProcessIO) -> None:
        io.clients -= 1
        if io.clients:
            return
        if io.stdin is not None and not io.stdin.tty:
            io.stdin.end()  # a TTY's stays open: a shell waits for its client to re-attach
        if io.job.done:
            self._io.pop(io.key, None)


async def _pump(taken, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One output of a stream to its socket, until the process ended and all is sent, or the
    client closed the socket."""
    if taken is None:
        return
    job, f = taken
    gone = asyncio.ensure_future(reader.read())  # the client sends nothing: EOF means it left
    try:
        async with contextlib.aclosing(follow(job, f)) as chunks:
            async for chunk in chunks:
                if gone.done():
                    return
                writer.write(chunk)
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        gone.cancel()


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    """The next NDJSON line (b"" at the end), however long: a stdin chunk escaped as JSON
    outgrows the reader's buffer limit."""
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            return b"".join(parts) + await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            part = await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError as exc:
            return b"".join(parts) + exc.partial
        except ConnectionError:
            return b""
        parts.append(part)
        size += len(part)
        if size > MAX_MESSAGE:
            raise WardenError(f"control message longer than {MAX_MESSAGE} bytes")


def _line(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"
