"""Request type -> handler. Handlers check the handle, take the container's lock and run the
orchestrator in the thread pool; ping, echo and list never touch a driver."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from ..container import DESTROYED, Container, handle_from_wire, handle_to_wire
from ..errors import WardenError
from ..jobs import SMALL_READ, Job
from ..orchestrator import OUTPUT_EXCEEDED
from ..protocol import frame_message, pb

if TYPE_CHECKING:
    from .listener import Connection, LentSocket, WardenServer

log = logging.getLogger(__name__)

RLIMIT_FIELDS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                 "nofile", "nproc", "rss", "rtprio", "sigpending", "stack")
DISK_FIELDS = ("block_limit", "block", "block_soft", "block_hard", "inode_limit", "inode",
               "inode_soft", "inode_hard", "byte_limit", "byte", "byte_soft", "byte_hard")
NET_OUT_FIELDS = ("network", "port", "port_range", "protocol", "icmp_type", "icmp_code", "log")
STAT_MESSAGES = {"memory_stat": pb.MemoryStat, "cpu_stat": pb.CpuStat, "disk_stat": pb.DiskStat,
                 "bandwidth_stat": pb.BandwidthStat, "pid_stat": pb.PidStat}
# Requests whose connection is closed at once by a drain: they may wait for a long time.
LONG_WAITS = ("LinkRequest", "RunRequest", "StreamRequest")


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw


def _present(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def info_response(fields: dict) -> pb.InfoResponse:
    resp = pb.InfoResponse()
    for key, value in fields.items():
        if value is None:
            continue
        if key in STAT_MESSAGES:
            getattr(resp, key).CopyFrom(STAT_MESSAGES[key](**value))
        elif key == "events":
            resp.events.extend(value)
        elif key == "job_ids":
            resp.job_ids.extend(value)
        elif key == "container_path":
            resp.container_path = value.encode("utf-8", "surrogateescape")
        elif key in ("state", "host_ip", "container_ip"):
            setattr(resp, key, value)
    return resp


class Dispatcher:
    def __init__(self, server: WardenServer) -> None:
        self.server = server
        self.orch = server.orchestrator
        self.handlers: dict[str, Callable] = {
            name: getattr(self, f"on_{name[:-len('Request')].lower()}")
            for name in ("PingRequest", "EchoRequest", "ListRequest", "CreateRequest",
                         "StopRequest", "DestroyRequest", "InfoRequest", "SpawnRequest",
                         "LinkRequest", "RunRequest", "StreamRequest", "NetInRequest",
                         "NetOutRequest", "CopyInRequest", "CopyOutRequest",
                         "LimitMemoryRequest", "LimitDiskRequest", "LimitBandwidthRequest",
                         "LimitCpuRequest")
        }

    async def handle(self, conn: Connection, request: Any) -> AsyncIterator[Any]:
        """Yield the response message(s) for one request (several for stream)."""
        handler = self.handlers.get(type(request).__name__)
        if handler is None:
            raise WardenError(f"Unknown request: {type(request).__name__}")
        result = handler(conn, request)
        if hasattr(result, "__aiter__"):
            async for resp in result:
                yield resp
        else:
            yield await result

    # -- helpers -------------------------------------------------------------------------
    def container(self, conn: Connection, request: Any) -> Container:
        handle = handle_from_wire(request.handle)
        container = self.orch.lookup(handle)
        self.server.references.add(conn, handle)
        return container

    async def locked(self, container: Container, fn: Callable, *args: Any) -> Any:
        async with self.server.lock_for(container):
            return await self.server.blocking(fn, *args)

    async def info_of(self, container: Container, full: bool = False) -> pb.InfoResponse:
        """Fresh info, or the obituary once the container is (being) destroyed. Not `full`
        but for an Info request: Link, Run and Stream answers carry it (hookspecs.info)."""
        if container.state != DESTROYED:
            try:
                return info_response(await self.locked(container, self.orch.info, container, full))
            except WardenError:
                if container.state != DESTROYED:
                    raise
        return container.obituary or pb.InfoResponse()

    # -- no container --------------------------------------------------------------------
    async def on_ping(self, conn, req):
        return pb.PingResponse()

    async def on_echo(self, conn, req):
        return pb.EchoResponse(message=req.message)

    async def on_list(self, conn, req):
        return pb.ListResponse(handles=[handle_to_wire(h) for h in self.orch.handles()])

    # -- lifecycle -----------------------------------------------------------------------
    async def on_create(self, conn, req):
        binds = []
        for bm in req.bind_mounts:
            if bm.mode not in (0, 1):
                raise WardenError("Unknown mode")
            binds.append({"src": _text(bm.src_path), "dst": _text(bm.dst_path),
                          "mode": "rw" if bm.mode == 1 else "ro"})
        grace = req.grace_time if req.HasField("grace_time") else self.server.settings.server.container_grace_time
        handle = handle_from_wire(req.handle) if req.HasField("handle") and req.handle else None
        container = await self.server.create(
            handle, grace, _text(req.network) if req.HasField("network") else None,
            _text(req.rootfs) if req.HasField("rootfs") and req.rootfs else None, binds, req)
        self.server.references.add(conn, container.handle)
        await self.server.watch_events(container)
        return pb.CreateResponse(handle=handle_to_wire(container.handle))

    async def on_stop(self, conn, req):
        container = self.container(conn, req)
        if req.background:
            self.server.background(self.locked(container, self.orch.stop, container, req.kill))
        else:
            await self.locked(container, self.orch.stop, container, req.kill)
        return pb.StopResponse()

    async def on_destroy(self, conn, req):
        container = self.container(conn, req)
        await self.server.destroy(container)
        return pb.DestroyResponse()

    async def on_info(self, conn, req):
        container = self.container(conn, req)
        return await self.info_of(container, full=True)

    # -- jobs ----------------------------------------------------------------------------
    def _job_args(self, conn, req) -> tuple[Container, tuple]:
        """The container and orchestrator.spawn's (or run's) arguments for a Spawn or Run."""
        container = self.container(conn, req)
        rlimits = {name: getattr(req.rlimits, name) for name in RLIMIT_FIELDS
                   if req.HasField("rlimits") and req.rlimits.HasField(name)}
        return container, (container, req.script, req.privileged, rlimits, req.discard_output,
                           _text(req.log_tag) if req.HasField("log_tag") else None)

    def _started(self, container: Container, job: Job) -> None:
        self.server.track_job(container, job)
        self.server.prepare_next_job(container)

    def _run(self, lent: LentSocket | None, container: Container, *args) -> tuple[Job, bytes | None]:
        """In the thread pool: orchestrator.run, and for a job that ended at once the answer,
        written from this thread straight to the client's socket (None: the loop writes all).
        Handing the answer back to the loop first cost ~0.15 ms a Run. Returns the job and
        what of the frame is left to write (None: the job has not ended)."""
        job, info = self.orch.run(container, *args)
        if info is None:
            return job, None
        frame = frame_message(self._response(job, pb.RunResponse, info_response(info)))
        return job, frame[lent.write_some(frame) if lent is not None else 0:]

    async def on_spawn(self, conn, req):
        container, args = self._job_args(conn, req)
        job = await self.locked(container, self.orch.spawn, *args)
        self._started(container, job)
        return pb.SpawnResponse(job_id=job.id)

    async def _link(self, container: Container, job: Job, response_cls):
        await job.wait()
        if job.output_limit_hit:
            container.add_event(OUTPUT_EXCEEDED)
        info = await self.info_of(container)
        if job.output_size() > SMALL_READ:  # megabytes of output: read off the loop
            response = await self.server.blocking(self._response, job, response_cls, info)
        else:
            response = self._response(job, response_cls, info)
        self.forget(container, job)
        return response

    def _response(self, job: Job, response_cls, info: pb.InfoResponse):
        stdout, stderr = job.read_output(self.server.settings.server.job_output_limit)
        return response_cls(exit_status=job.exit_status, stdout=stdout, stderr=stderr, info=info)

    def forget(self, container: Container, job: Job) -> None:
        """Drop a linked job from memory now; its snapshot write and directory go after the
        response (orchestrator.forget_job)."""
        self.orch.forget_job(container, job)
        self.server.schedule_flush(container)

    async def on_link(self, conn, req):
        container = self.container(conn, req)
        job = self.orch.find_job(container, req.job_id)
        return await self._link(container, job, pb.LinkResponse)

    async def on_run(self, conn, req):
        """A job that ended at once was answered by _run already (but for what the socket did
        not take yet, returned as bytes); a longer one is awaited as for a Link."""
        container, args = self._job_args(conn, req)
        lent = conn.lend_socket()
        try:
            job, unsent = await self.locked(container, self._run, lent, *args)
        finally:
            if lent is not None:
                lent.close()
        self.server.schedule_flush(container)  # records the job if it runs on
        self._started(container, job)
        if unsent is None:
            return await self._link(container, job, pb.RunResponse)
        self.forget(container, job)
        return unsent

    async def on_stream(self, conn, req):
        container = self.container(conn, req)
        job = self.orch.find_job(container, req.job_id)
        async for name, data in job.follow(self.server.settings.server.job_output_limit):
            yield pb.StreamResponse(name=name, data=data)
        status = await job.wait()
        info = await self.info_of(container)
        yield pb.StreamResponse(exit_status=status, info=info)
        self.forget(container, job)

    # -- network -------------------------------------------------------------------------
    async def on_netin(self, conn, req):
        container = self.container(conn, req)
        host_port, container_port = await self.locked(
            container, self.orch.net_in, container, _present(req, "host_port"),
            _present(req, "container_port"))
        return pb.NetInResponse(host_port=host_port, container_port=container_port)

    async def on_netout(self, conn, req):
        container = self.container(conn, req)
        rule = {name: _present(req, name) for name in NET_OUT_FIELDS}
        for key in ("network", "port_range"):
            if rule[key] is not None:
                rule[key] = _text(rule[key])
        await self.locked(container, self.orch.net_out, container, rule)
        return pb.NetOutResponse()

    # -- files ---------------------------------------------------------------------------
    async def on_copyin(self, conn, req):
        container = self.container(conn, req)
        await self.locked(container, self.orch.copy_in, container, _text(req.src_path), _text(req.dst_path))
        return pb.CopyInResponse()

    async def on_copyout(self, conn, req):
        container = self.container(conn, req)
        owner = _text(req.owner) if req.HasField("owner") and req.owner else None
        await self.locked(container, self.orch.copy_out, container, _text(req.src_path),
                          _text(req.dst_path), owner)
        return pb.CopyOutResponse()

    # -- limits --------------------------------------------------------------------------
    async def on_limitmemory(self, conn, req):
        container = self.container(conn, req)
        kept = await self.locked(container, self.orch.limit_memory, container, _present(req, "limit_in_bytes"))
        await self.server.watch_events(container)
        return pb.LimitMemoryResponse(limit_in_bytes=kept)

    async def on_limitcpu(self, conn, req):
        container = self.container(conn, req)
        kept = await self.locked(container, self.orch.limit_cpu, container, _present(req, "limit_in_shares"))
        return pb.LimitCpuResponse(limit_in_shares=kept)

    async def on_limitbandwidth(self, conn, req):
        container = self.container(conn, req)
        rate, burst = await self.locked(container, self.orch.limit_bandwidth, container, req.rate, req.burst)
        return pb.LimitBandwidthResponse(rate=rate, burst=burst)

    async def on_limitdisk(self, conn, req):
        container = self.container(conn, req)
        limits = {name: getattr(req, name) for name in DISK_FIELDS if req.HasField(name)}
        kept = await self.locked(container, self.orch.limit_disk, container, limits)
        return pb.LimitDiskResponse(**kept)
