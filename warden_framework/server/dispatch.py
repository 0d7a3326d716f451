"""The Warden front end's handlers: request type -> handler. A handler checks the handle,
turns the request into a spec or orchestrator call, and runs it through the runtime (the
container's lock, the thread pool); ping, echo and list never touch a driver. A Run that ends
at once is answered by short_run.py."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Callable

from ..container import DESTROYED, OUTPUT_EXCEEDED, Container, handle_from_wire, handle_to_wire
from ..errors import WardenError
from ..jobs import SMALL_READ, Job
from ..protocol import pb
from ..specs import BindMount, CreateSpec, JobSpec
from .connection import Connection
from .responses import info_response, job_response
from .runtime import Runtime
from .short_run import start_run
from .stream_out import send_output

log = logging.getLogger(__name__)

RLIMIT_FIELDS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                 "nofile", "nproc", "rss", "rtprio", "sigpending", "stack")
DISK_FIELDS = ("block_limit", "block", "block_soft", "block_hard", "inode_limit", "inode",
               "inode_soft", "inode_hard", "byte_limit", "byte", "byte_soft", "byte_hard")
NET_OUT_FIELDS = ("network", "port", "port_range", "protocol", "icmp_type", "icmp_code", "log")
# Requests whose connection is closed at once by a drain: they may wait for a long time.
LONG_WAITS = ("LinkRequest", "RunRequest", "StreamRequest")


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw


def _present(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


class Dispatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.orch = runtime.orchestrator
        self.output_limit = runtime.settings.server.job_output_limit
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
        self.runtime.references.add(conn, handle)
        return container

    async def locked(self, container: Container, fn: Callable, *args: Any) -> Any:
        return await self.runtime.locked(container, fn, *args)

    async def info_of(self, container: Container, full: bool = False) -> pb.InfoResponse:
        """Fresh info, or the obituary once the container is (being) destroyed. Not `full`
        but for an Info request: Link, Run and Stream answers carry it (hookspecs.info)."""
        if container.state != DESTROYED:
            try:
                return info_response(await self.locked(container, self.orch.info, container, full))
            except WardenError:
                if container.state != DESTROYED:
                    raise
        return info_response(container.obituary)

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
            binds.append(BindMount(src=_text(bm.src_path), dst=_text(bm.dst_path),
                                   mode="rw" if bm.mode == 1 else "ro"))
        spec = CreateSpec(
            handle=handle_from_wire(req.handle) if req.HasField("handle") and req.handle else None,
            grace_time=(req.grace_time if req.HasField("grace_time")
                        else self.runtime.settings.server.container_grace_time),
            network=_text(req.network) if req.HasField("network") else None,
            rootfs=_text(req.rootfs) if req.HasField("rootfs") and req.rootfs else None,
            bind_mounts=tuple(binds), request=req)
        container = await self.runtime.create(spec)
        self.runtime.references.add(conn, container.handle)
        return pb.CreateResponse(handle=handle_to_wire(container.handle))

    async def on_stop(self, conn, req):
        container = self.container(conn, req)
        if req.background:
            self.runtime.tasks.run(self.locked(container, self.orch.stop, container, req.kill))
        else:
            await self.locked(container, self.orch.stop, container, req.kill)
        return pb.StopResponse()

    async def on_destroy(self, conn, req):
        container = self.container(conn, req)
        await self.runtime.destroy(container)
        return pb.DestroyResponse()

    async def on_info(self, conn, req):
        container = self.container(conn, req)
        return await self.info_of(container, full=True)

    # -- jobs ----------------------------------------------------------------------------
    def _job_request(self, conn, req) -> tuple[Container, JobSpec]:
        """The container and the job a Spawn or Run asks for."""
        container = self.container(conn, req)
        rlimits = {name: getattr(req.rlimits, name) for name in RLIMIT_FIELDS
                   if req.HasField("rlimits") and req.rlimits.HasField(name)}
        return container, JobSpec(script=req.script, privileged=req.privileged, rlimits=rlimits,
                                  discard_output=req.discard_output,
                                  log_tag=_text(req.log_tag) if req.HasField("log_tag") else None)

    async def on_spawn(self, conn, req):
        container, spec = self._job_request(conn, req)
        job = await self.locked(container, self.orch.spawn, container, spec)
        self.runtime.jobs.started(container, job)
        return pb.SpawnResponse(job_id=job.id)

    async def _link(self, container: Container, job: Job, response_cls):
        await job.wait()
        if job.output_limit_hit:
            self.orch.record_event(container, OUTPUT_EXCEEDED)
        info = await self.info_of(container)
        if job.output_size() > SMALL_READ:  # megabytes of output: read off the loop
            response = await self.runtime.blocking(job_response, job, response_cls, info,
                                                   self.output_limit)
        else:
            response = job_response(job, response_cls, info, self.output_limit)
        self.orch.forget_job(container, job)
        return response

    async def on_link(self, conn, req):
        container = self.container(conn, req)
        job = self.orch.find_job(container, req.job_id)
        return await self._link(container, job, pb.LinkResponse)

    async def on_run(self, conn, req):
        """A job that ends at once is answered by short_run; a longer one as for a Link."""
        container, spec = self._job_request(conn, req)
        run = await start_run(self.runtime, conn.writer, container, spec)
        self.runtime.jobs.started(container, run.job)
        if run.answered:
            self.orch.forget_job(container, run.job)
            return
        yield await self._link(container, run.job, pb.RunResponse)

    async def on_stream(self, conn, req):
        container = self.container(conn, req)
        job = self.orch.find_job(container, req.job_id)
        await send_output(conn.writer, job, self.output_limit)  # the chunks, by sendfile
        status = await job.wait()
        info = await self.info_of(container)
        yield pb.StreamResponse(exit_status=status, info=info)
        self.orch.forget_job(container, job)

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
        await self.runtime.events.watch(container)
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
