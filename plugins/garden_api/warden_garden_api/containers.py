"""Garden routes on containers (everything but processes and file streams): garden-api.md
§3-4, §6. Each turns a request into orchestrator calls run through the runtime (the
container's lock, the thread pool), as the Warden front end does; state Garden adds
(properties, grace time, net rules, limits) lives in the container's record, so containers
made through either front end answer every route here.

Every per-container route looks the handle up first (404 ContainerNotFoundError) and holds
the container for its duration, which pauses its grace timer (frontend.holding).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from warden_framework.container import Container
from warden_framework.errors import WardenError

from . import host, limits
from .create_spec import NANOSECONDS, create_plan
from .errors import error_object
from .http import HTTPError, Request, Response, Router
from .json_shapes import ZERO_INFO, container_info, metrics, zero_metrics
from .net_out_rules import core_rules
from .request_fields import array, boolean, obj, string, uint

log = logging.getLogger(__name__)

ContainerHandler = Callable[[Request, Container], Awaitable[Response]]


def register(router: Router, garden) -> None:
    runtime = garden.runtime
    orch = garden.orchestrator

    def per_container(handler: ContainerHandler) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            handle = request.params["handle"]
            container = garden.container(handle)
            with garden.holding(handle):
                return await handler(request, container)
        return route

    def locked(container: Container, fn: Callable, *args) -> Awaitable:
        return runtime.locked(container, fn, orch, container, *args)

    # -- the server --------------------------------------------------------------------------
    async def ping(request: Request) -> Response:
        return Response.json({})

    async def capacity(request: Request) -> Response:
        return Response.json(await runtime.blocking(host.capacity, orch))

    async def list_containers(request: Request) -> Response:
        """Every query parameter is a property the container must have, with that value."""
        wanted = {key: values[0] for key, values in request.query.items()}
        handles = []
        for handle in orch.handles():
            container = orch.containers.get(handle)
            properties = dict(container.properties) if container else {}
            if all(properties.get(key) == value for key, value in wanted.items()):
                handles.append(handle)
        return Response.json({"Handles": handles})

    # -- lifecycle ---------------------------------------------------------------------------
    async def create(request: Request) -> Response:
        """The container, then its limits and net rules under its lock; if any of those
        fails the container is destroyed and the client gets that failure."""
        plan = create_plan(await request.json(), runtime.settings.server.container_grace_time)
        if plan.spec.privileged and not garden.allow_privileged:
            raise WardenError("privileged containers are not allowed on this server "
                              "(frontends.garden.allow_privileged)")
        container = await runtime.create(plan.spec)
        with garden.holding(container.handle):
            try:
                await runtime.locked(container, limits.apply_at_create, orch, container, plan)
                if plan.limits.memory is not None:
                    await runtime.events.watch(container)  # OOM watching starts with a limit
            except BaseException:
                await _destroy_quietly(container)
                raise
        return Response.json({"Handle": container.handle})

    async def _destroy_quietly(container: Container) -> None:
        try:
            await runtime.destroy(container)
        except Exception as exc:  # the create's own error is what the client gets
            log.error("destroy of %s after its create failed: %s", container.handle, exc)

    @per_container
    async def destroy(request: Request, container: Container) -> Response:
        await runtime.destroy(container)
        return Response.json({})

    @per_container
    async def stop(request: Request, container: Container) -> Response:
        """kill in the body, as the Go client sends it (or in the query)."""
        body = obj(await request.json(), "body")
        kill = boolean(body.get("kill"), "kill") or request.arg("kill") == "true"
        await runtime.locked(container, orch.stop, container, kill)
        return Response.json({})

    # -- inspection --------------------------------------------------------------------------
    async def info_of(container: Container) -> dict:
        fields = await runtime.locked(container, orch.info, container, True)
        return container_info(container, fields, orch.hooks.has("network"), host.external_ip())

    async def metrics_of(container: Container) -> dict:
        fields, shares = await runtime.locked(container, _info_and_shares, orch, container)
        return metrics(container, fields, shares, host.cpu_entitlement_per_share())

    @per_container
    async def info(request: Request, container: Container) -> Response:
        return Response.json(await info_of(container))

    @per_container
    async def container_metrics(request: Request, container: Container) -> Response:
        return Response.json(await metrics_of(container))

    def bulk(key: str, answer: Callable[[Container], Awaitable[dict]], zero: Callable[[], dict]):
        """BulkInfo / BulkMetrics: one entry per handle, a failure in its Err (status 200)."""
        async def one(handle: str) -> dict:
            try:
                container = garden.container(handle)
                with garden.holding(handle):
                    return {key: await answer(container), "Err": None}
            except Exception as exc:  # per-handle boundary: the error goes in the entry
                return {key: zero(), "Err": error_object(exc)[1]}

        async def route(request: Request) -> Response:
            handles = [h for h in (request.arg("handles") or "").split(",") if h]
            entries = await asyncio.gather(*(one(handle) for handle in handles))
            return Response.json(dict(zip(handles, entries)))
        return route

    # -- limits ------------------------------------------------------------------------------
    def current(read: Callable[..., dict]) -> Callable[[Request], Awaitable[Response]]:
        @per_container
        async def route(request: Request, container: Container) -> Response:
            return Response.json(await locked(container, read))
        return route

    # -- network -----------------------------------------------------------------------------
    @per_container
    async def net_in(request: Request, container: Container) -> Response:
        body = obj(await request.json(), "body")
        host_port, container_port = await runtime.locked(
            container, orch.net_in, container,
            uint(body.get("host_port"), "host_port", 32) or None,
            uint(body.get("container_port"), "container_port", 32) or None)
        return Response.json({"host_port": host_port, "container_port": container_port})

    async def _net_out(container: Container, rules: list[dict]) -> Response:
        await runtime.locked(container, _apply_net_out, orch, container, rules)
        return Response.json({})

    @per_container
    async def net_out(request: Request, container: Container) -> Response:
        return await _net_out(container, core_rules(await request.json()))

    @per_container
    async def bulk_net_out(request: Request, container: Container) -> Response:
        body = array(await request.json(), "body")
        rules = [rule for i, item in enumerate(body) for rule in core_rules(item, f"[{i}]")]
        return await _net_out(container, rules)

    # -- grace time and properties -----------------------------------------------------------
    @per_container
    async def set_grace_time(request: Request, container: Container) -> Response:
        """A bare number of nanoseconds; 0 means never reap. The timer restarts with it when
        this request lets the container go."""
        nanoseconds = uint(await request.json(), "grace time")
        seconds = nanoseconds / NANOSECONDS if nanoseconds else None
        await runtime.locked(container, orch.set_grace_time, container, seconds)
        return Response.json({})

    @per_container
    async def properties(request: Request, container: Container) -> Response:
        return Response.json(dict(container.properties))

    @per_container
    async def get_property(request: Request, container: Container) -> Response:
        key = request.params["key"]
        value = container.properties.get(key)
        if value is None:
            raise WardenError(f"property does not exist: {key}")
        return Response.json({"value": value})

    @per_container
    async def set_property(request: Request, container: Container) -> Response:
        body = obj(await request.json(), "body")
        if "value" not in body:
            raise HTTPError(400, "body: {\"value\": ...} is needed")
        value = string(body["value"], "value")
        await runtime.locked(container, orch.set_property, container, request.params["key"], value)
        return Response.json({})

    @per_container
    async def remove_property(request: Request, container: Container) -> Response:
        """A missing key is no error (Guardian's behaviour)."""
        await locked(container, _remove_if_present, request.params["key"])
        return Response.json({})

    routes = [
        ("GET", "/ping", ping),
        ("GET", "/capacity", capacity),
        ("POST", "/containers", create),
        ("GET", "/containers", list_containers),
        ("GET", "/containers/bulk_info", bulk("Info", info_of, lambda: dict(ZERO_INFO))),
        ("GET", "/containers/bulk_metrics", bulk("Metrics", metrics_of, zero_metrics)),
        ("DELETE", "/containers/:handle", destroy),
        ("PUT", "/containers/:handle/stop", stop),
        ("GET", "/containers/:handle/info", info),
        ("GET", "/containers/:handle/metrics", container_metrics),
        ("GET", "/containers/:handle/limits/bandwidth", current(limits.current_bandwidth)),
        ("GET", "/containers/:handle/limits/cpu", current(limits.current_cpu)),
        ("GET", "/containers/:handle/limits/disk", current(limits.current_disk)),
        ("GET", "/containers/:handle/limits/memory", current(limits.current_memory)),
        ("POST", "/containers/:handle/net/in", net_in),
        ("POST", "/containers/:handle/net/out", net_out),
        ("POST", "/containers/:handle/net/out/bulk", bulk_net_out),
        ("PUT", "/containers/:handle/grace_time", set_grace_time),
        ("GET", "/containers/:handle/properties", properties),
        ("GET", "/containers/:handle/properties/:key", get_property),
        ("PUT", "/containers/:handle/properties/:key", set_property),
        ("DELETE", "/containers/:handle/properties/:key", remove_property),
    ]
    for method, template, handler in routes:
        router.add(method, template, handler)


def _info_and_shares(orch, container: Container) -> tuple[dict, int]:
    """One hand-off to the pool for Metrics: the stats and the shares they are weighed by."""
    return orch.info(container, True), limits.cpu_shares(orch, container)


def _apply_net_out(orch, container: Container, rules: list[dict]) -> None:
    for rule in rules:
        orch.net_out(container, rule)


def _remove_if_present(orch, container: Container, key: str) -> None:
    if key in container.properties:
        orch.remove_property(container, key)
