"""The unix-socket server: one reader loop per connection, requests answered strictly in
order, connections concurrent. Bad frames are logged, answered with an ErrorResponse where
possible, and close only their own connection."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import itertools
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from ..config import Settings
from ..container import DESTROYED, Container
from ..errors import ConfigError, WardenError
from ..jobs import Job
from ..orchestrator import Orchestrator
from ..protocol import (FrameDecoder, FrameError, ProtocolError, decode_message, error_response,
                        frame_message)
from .dispatch import LONG_WAITS, Dispatcher, info_response
from .grace import References
from .joblog import forward_output

log = logging.getLogger(__name__)
READ_SIZE = 1 << 16
# What one connection may hold: a partial frame past SLOW_FRAME_BYTES must keep coming, at
# MIN_FRAME_RATE bytes/s averaged since its first byte (plus FRAME_GRACE seconds) and with no
# pause longer than FRAME_STALL seconds, or the connection is closed and its buffer freed.
SLOW_FRAME_BYTES = 1 << 16
MIN_FRAME_RATE = 1 << 16
FRAME_GRACE = 1.0
FRAME_STALL = 2.0
OUTPUT_CHECK_INTERVAL = 0.1
# How long a stale snapshot (a job ended or was forgotten) may wait for its write. Any write
# in between (the next spawn's) settles it, so a busy container writes once per job.
FLUSH_DELAY = 0.05


def bind_socket(path: str, mode: int, group: str | None) -> socket.socket:
    """The listening socket, owned by `group` with `mode` before it accepts anyone: bound
    under a 0077 umask, so no connection can slip in while the mode is still the default."""
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"server.unix_domain_group: no group named {group!r}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o077)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chown(path, -1, gid)
        os.chmod(path, mode)
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    _ids = itertools.count(1)

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.id = next(self._ids)
        self.writer = writer
        self.current: str | None = None  # type name of the request being handled
        self.draining = False
        self.task: asyncio.Task | None = None

    def __hash__(self) -> int:
        return self.id

    def lend_socket(self) -> LentSocket | None:
        """The client's socket, lent to a worker thread to write this request's response, or
        None while the transport still holds bytes (they go first) or is closing. Safe because
        a connection's requests are answered one at a time: nothing else writes to it until
        this response is out. The caller closes the loan when the request is done."""
        transport = self.writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return None
        sock = transport.get_extra_info("socket")
        return None if sock is None else LentSocket(os.dup(sock.fileno()))


class LentSocket:
    """A duplicate of a client's socket (so the loop closing the connection cannot free its
    number for reuse while a worker writes), written and closed under one lock: a close
    waits for a write under way, and a write after the close writes nothing."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

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


class WardenServer:
    def __init__(self, settings: Settings, orchestrator: Orchestrator) -> None:
        self.settings = settings
        self.orchestrator = orchestrator
        self.references = References(self._grace_expired)
        self.executor = ThreadPoolExecutor(max_workers=settings.server.request_threads,
                                           thread_name_prefix="warden-req")
        # Creates, destroys and destroy cleanups are mostly Python (holding the GIL) and
        # kernel work; more of them at once than CPUs buys nothing and makes every thread, the
        # loop's included, queue for the GIL. Cleanups have a limit of their own, so a backlog
        # of them never delays a create; other requests keep the rest of the pool.
        self._lifecycle = asyncio.Semaphore(os.cpu_count() or 1)
        self._cleanups_running = asyncio.Semaphore(os.cpu_count() or 1)
        self.dispatcher = Dispatcher(self)
        self.connections: set[Connection] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._watched: dict[str, list[Any]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._flushes: set[str] = set()  # container ids with a flush scheduled
        self._preparing: set[str] = set()  # container ids whose next job dir is being made
        self._cleanups: set[asyncio.Future] = set()  # finish_destroy calls not yet done
        self._server: asyncio.AbstractServer | None = None
        self._drained = asyncio.Event()
        self.draining = False

    # -- plumbing used by the dispatcher ---------------------------------------------------
    async def blocking(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def create(self, *args: Any) -> Container:
        """orchestrator.create in the thread pool, at most one per CPU at a time."""
        async with self._lifecycle:
            return await self.blocking(self.orchestrator.create, *args)

    async def _finish_destroy(self, container: Container) -> bool:
        async with self._cleanups_running:
            return await self.blocking(self.orchestrator.finish_destroy, container)

    def lock_for(self, container: Container) -> asyncio.Lock:
        return self._locks.setdefault(container.id, asyncio.Lock())

    def background(self, coro: Awaitable) -> None:
        _keep(self._tasks, coro, log.warning, "background task failed: %s")

    async def watch_events(self, container: Container) -> None:
        """Watch the container's event fds (OOM) on the loop: no polling, no helper process."""
        sources = await self.blocking(self.orchestrator.hooks.event_sources, container)
        watched = self._watched.setdefault(container.id, [])
        loop = asyncio.get_running_loop()
        for src in sources:
            if any(s is src for s in watched):
                continue
            watched.append(src)
            loop.add_reader(src.fileno(), self._on_event, container, src)

    def _on_event(self, container: Container, src: Any) -> None:
        try:
            event = src.read_event()
        except OSError as exc:
            log.warning("event source of %s failed: %s", container.id, exc)
            event = None
            self._unwatch_one(container, src)
        if event == "out of memory":
            self.background(self.locked_call(container, self.orchestrator.out_of_memory, container))
        elif event:
            container.add_event(event)

    async def locked_call(self, container: Container, fn: Callable, *args: Any) -> Any:
        async with self.lock_for(container):
            if container.state == DESTROYED:
                return None
            return await self.blocking(fn, *args)

    def _unwatch_one(self, container: Container, src: Any) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(src.fileno())
        with contextlib.suppress(Exception):
            src.close()
        self._watched.get(container.id, []).remove(src)

    def _unwatch(self, container: Container) -> None:
        for src in list(self._watched.get(container.id, [])):
            self._unwatch_one(container, src)
        self._watched.pop(container.id, None)

    def track_job(self, container: Container, job: Job, recovered: bool = False) -> None:
        """Enforce the output limit while the job runs; mark the snapshot stale when it ends;
        copy its output to syslog when it has a log_tag (after a restart, from where the
        snapshot says forwarding got to, so a line written while no server ran is not skipped;
        lines after the last snapshot write are sent again). A job that already ended (a short
        Run's) needs no task."""
        if job.done:
            self._job_ended(container, job)
        else:
            self.background(self._supervise_job(container, job))
        if job.log_tag and not job.discard_output:
            start = dict(job.log_offsets) if recovered else None
            self.background(forward_output(job, self.settings.server.job_output_limit,
                                           self.settings.server.syslog_socket, start))

    async def _supervise_job(self, container: Container, job: Job) -> None:
        limit = self.settings.server.job_output_limit
        finished = asyncio.ensure_future(job.wait())  # one waiter for the job's whole life
        # Output thrown away has no limit: nothing to check, so no wake-ups either.
        while not finished.done() and not job.discard_output:
            if job.output_size() > limit:
                await self.blocking(self.orchestrator.enforce_output_limit, container, job)
            await asyncio.wait({finished}, timeout=OUTPUT_CHECK_INTERVAL)
        await finished
        self._job_ended(container, job)

    def _job_ended(self, container: Container, job: Job) -> None:
        if job.output_limit_hit:  # only the snapshot keeps this flag: write it now
            self.background(self.locked_call(container, self.orchestrator.write_snapshot, container))
        else:
            self.orchestrator.job_ended(container, job)
            self.schedule_flush(container)

    def prepare_next_job(self, container: Container) -> None:
        """Make the container's next job directory in the thread pool once this request is
        answered (the task starts after the current one yields), once however often asked."""
        if container.id not in self._preparing:
            self._preparing.add(container.id)
            self.background(self._prepare_next_job(container))

    async def _prepare_next_job(self, container: Container) -> None:
        try:
            await self.locked_call(container, self.orchestrator.prepare_job_dir, container)
        finally:
            self._preparing.discard(container.id)

    def schedule_flush(self, container: Container) -> None:
        """Run orchestrator.flush for `container` FLUSH_DELAY from now, once however often asked."""
        if container.id not in self._flushes:
            self._flushes.add(container.id)
            self.background(self._flush_later(container))

    async def _flush_later(self, container: Container) -> None:
        try:
            await asyncio.sleep(FLUSH_DELAY)
        finally:
            self._flushes.discard(container.id)
        if container.state != DESTROYED:  # destroy removed the lock and everything to flush
            await self.locked_call(container, self.orchestrator.flush, container)

    async def destroy(self, container: Container) -> None:
        async with self.lock_for(container):
            if container.state == DESTROYED:
                raise WardenError("unknown handle")
            self._unwatch(container)
            async with self._lifecycle:
                await self.blocking(self._destroy_now, container)
        self.references.forget(container.handle)
        self._locks.pop(container.id, None)
        self._finish_destroy_later(container)

    def _destroy_now(self, container: Container) -> None:
        """The obituary (facts §4.6; kept before any job is finished, so a Link woken by the
        destroy finds it), then the destroy: one hand-off to the thread pool for both."""
        with contextlib.suppress(Exception):
            container.obituary = info_response(self.orchestrator.info(container, full=False))
        self.orchestrator.destroy(container)

    def _finish_destroy_later(self, container: Container) -> None:
        """Run the rest of the destroy in the thread pool once the client has its answer
        (this returns before the task's first step, so the response is written first);
        drain and close wait for it."""
        _keep(self._cleanups, self._finish_destroy(container), log.error,
              "finishing a destroy failed: %s")

    async def wait_cleanups(self) -> None:
        """Return once every destroy started so far has finished its cleanup."""
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)

    async def _grace_expired(self, handle: str) -> None:
        try:
            container = self.orchestrator.lookup(handle)
            log.info("grace time of %s expired: destroying it", handle)
            await self.destroy(container)
        except WardenError as exc:
            log.info("grace destroy of %s: %s", handle, exc)

    def _grace_of(self, handle: str) -> float | None:
        container = self.orchestrator.containers.get(handle)
        return None if container is None else container.grace_time

    # -- serving ---------------------------------------------------------------------------
    async def start(self, recovered: list[Container]) -> None:
        path = self.settings.server.unix_domain_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = bind_socket(path, self.settings.server.unix_domain_permissions,
                           self.settings.server.unix_domain_group)
        self._server = await asyncio.start_unix_server(self._serve_connection, sock=sock,
                                                       limit=READ_SIZE)
        for container in recovered:
            await self.watch_events(container)
            for job in container.jobs.values():
                if not job.done:
                    self.track_job(container, job, recovered=True)
            self.references.start_timer(container.handle, container.grace_time)
        log.info("Listening on %s", path)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.draining:
            writer.close()
            return
        if len(self.connections) >= self.settings.server.max_connections:
            log.warning("refusing a connection: %d open (server.max_connections)",
                        len(self.connections))
            writer.close()
            return
        conn = Connection(writer)
        conn.task = asyncio.current_task()
        self.connections.add(conn)
        self.references.connect(conn, self.orchestrator.handles())
        try:
            await self._read_requests(conn, reader)
        except ProtocolError as exc:
            log.warning("connection %d: bad input: %s", conn.id, exc)
            with contextlib.suppress(Exception):
                writer.write(frame_message(error_response(str(exc))))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(conn)
            self.references.disconnect(conn, self._grace_of)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if self.draining and not self.connections:
                self._drained.set()

    async def _read_requests(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        """Answer every complete frame in arrival order until EOF or drain. A bad frame raises
        ProtocolError, but only after the frames that came before it have been answered."""
        decoder = FrameDecoder(max_frame=self.settings.server.max_frame_bytes)
        loop = asyncio.get_running_loop()
        started = 0.0  # when the partial frame in the decoder began
        while not conn.draining:
            if decoder.pending > SLOW_FRAME_BYTES:
                now = loop.time()
                deadline = min(now + FRAME_STALL,
                               started + FRAME_GRACE + decoder.pending / MIN_FRAME_RATE)
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), max(0.0, deadline - now))
                except asyncio.TimeoutError:
                    log.warning("connection %d: closed: a frame stalled at %d bytes (slower "
                                "than %d bytes/s)", conn.id, decoder.pending, MIN_FRAME_RATE)
                    return
            else:
                data = await reader.read(READ_SIZE)
            if not data:
                return
            fresh = not decoder.pending
            try:
                frames, bad = decoder.feed(data), None
            except FrameError as exc:
                frames, bad = exc.frames, exc
            if fresh or frames:  # the partial frame left in the decoder began with this read
                started = loop.time()
            for frame in frames:
                await self._answer(conn, decode_message(frame))
                if conn.draining:
                    return
            if bad is not None:
                raise bad

    async def _answer(self, conn: Connection, request: Any) -> None:
        conn.current = type(request).__name__
        try:
            async for response in self.dispatcher.handle(conn, request):
                # bytes: the rest of a frame a worker thread began to write (Dispatcher._run)
                conn.writer.write(response if isinstance(response, bytes) else frame_message(response))
                await conn.writer.drain()
        except WardenError as exc:
            conn.writer.write(frame_message(error_response(exc.message)))
            await conn.writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # request boundary: a bug, but the connection goes on
            log.exception("request %s failed", conn.current)
            conn.writer.write(frame_message(error_response(str(exc) or type(exc).__name__)))
            await conn.writer.drain()
        finally:
            conn.current = None

    # -- drain and shutdown ----------------------------------------------------------------
    async def drain(self) -> None:
        """SIGUSR2: stop accepting; close idle and waiting connections now, the others after
        their request; write every snapshot; finish every destroyed container's cleanup;
        jobs keep running (facts §3.3)."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.draining = True
            if conn.current is None or conn.current in LONG_WAITS:
                if conn.task is not None:
                    conn.task.cancel()
        if self.connections:
            await self._drained.wait()
        for container in list(self.orchestrator.containers.values()):
            async with self.lock_for(container):
                with contextlib.suppress(Exception):
                    await self.blocking(self._write_and_flush, container)
        await self.wait_cleanups()

    def _write_and_flush(self, container: Container) -> None:
        self.orchestrator.write_snapshot(container)
        self.orchestrator.flush(container)

    async def close(self) -> None:
        await self.wait_cleanups()  # a stopped server has finished every cleanup
        for task in list(self._tasks):
            task.cancel()
        for container in list(self.orchestrator.containers.values()):
            self._unwatch(container)
        self.executor.shutdown(wait=False, cancel_futures=True)


def _keep(group: set, coro: Awaitable, report: Callable[..., None], message: str) -> None:
    """Run `coro` as a task kept in `group` until it is done; report its failure, if any."""
    task = asyncio.ensure_future(coro)
    group.add(task)

    def done(finished: asyncio.Future) -> None:
        group.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            report(message, finished.exception())

    task.add_done_callback(done)
