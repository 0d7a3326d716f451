"""Build the PluginManager (specs, drivers, `warden.plugins` entry points) and the Hooks facade.

Start-up checks: every implementation matches a spec (check_pending); each single-owner hook
has exactly one non-wrapper implementation, the configured driver's; every abstract method of
a driver's base class is a registered hookimpl (an unmarked override would silently do nothing).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pluggy

from . import hookspecs
from .drivers import BASES, Driver
from .errors import ConfigError, WardenError

log = logging.getLogger(__name__)
PROJECT = "warden"
EXTRA_PLUGINS_GROUP = "warden.plugins"


def build_plugin_manager(drivers: dict[str, Driver], extra: list[Any] | None = None,
                         load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for subsystem, drv in drivers.items():
        _check_marked(subsystem, drv)
        pm.register(drv, name=f"{subsystem}:{type(drv).__name__}")
    for plugin in extra or []:
        pm.register(plugin)
    if load_entry_points:
        pm.load_setuptools_entrypoints(EXTRA_PLUGINS_GROUP)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"plugins: {exc}") from exc
    _check_owners(pm, drivers)
    return pm


def _check_marked(subsystem: str, drv: Driver) -> None:
    base = BASES[subsystem]
    for name in base.__abstractmethods__ if hasattr(base, "__abstractmethods__") else ():
        if name == "check_host":
            continue
        method = getattr(type(drv), name)
        if not getattr(method, "warden_impl", None):
            raise ConfigError(f"drivers.{subsystem}: {type(drv).__name__}.{name} is not marked "
                              f"with @hookimpl, so pluggy would never call it")


def _check_owners(pm: pluggy.PluginManager, drivers: dict[str, Driver]) -> None:
    for hook_name, subsystem in hookspecs.OWNERS.items():
        impls = [i for i in getattr(pm.hook, hook_name).get_hookimpls()
                 # `wrapper` is pluggy >= 1.1's; Debian 12 ships 1.0, which has only hookwrapper
                 if not (i.hookwrapper or getattr(i, "wrapper", False))]
        owners = [pm.get_name(i.plugin) for i in impls]
        expected = drivers.get(subsystem)
        if expected is None:
            if owners:
                raise ConfigError(f"hook {hook_name}: implemented by {', '.join(owners)} but no "
                                  f"{subsystem} driver is configured")
            continue
        if len(impls) != 1 or impls[0].plugin is not expected:
            raise ConfigError(f"hook {hook_name}: must have exactly one implementation, the "
                              f"{subsystem} driver's; found: {', '.join(owners) or 'none'}")


class Hooks:
    """Typed facade over pm.hook: the only way core code calls a hook (grep finds every caller)."""

    def __init__(self, pm: pluggy.PluginManager, subsystems: set[str]) -> None:
        self.pm = pm
        self.subsystems = subsystems

    def has(self, subsystem: str) -> bool:
        return subsystem in self.subsystems

    def _call(self, name: str, **kwargs: Any) -> Any:
        return getattr(self.pm.hook, name)(**kwargs)

    def _owned(self, name: str, **kwargs: Any) -> Any:
        subsystem = hookspecs.OWNERS[name]
        if subsystem not in self.subsystems:
            raise WardenError(f"no {subsystem} driver is configured")
        return self._call(name, **kwargs)

    # server start
    def setup_host(self, settings): return self._call("setup_host", settings=settings)
    def teardown_host(self, settings): return self._call("teardown_host", settings=settings)
    # create steps
    def pre_create(self, container, request, settings):
        return self._call("pre_create", container=container, request=request, settings=settings)
    def setup_fs(self, container, settings): return self._owned("setup_fs", container=container, settings=settings)
    def teardown_fs(self, container, record): return self._owned("teardown_fs", container=container, record=record)
    def setup_init(self, container, settings): return self._owned("setup_init", container=container, settings=settings)
    def start_init(self, container, record): return self._owned("start_init", container=container, record=record)
    def teardown_init(self, container, record): return self._owned("teardown_init", container=container, record=record)
    def apply_limits(self, container, settings): return self._owned("apply_limits", container=container, settings=settings)
    def release_limits(self, container, record): return self._owned("release_limits", container=container, record=record)
    def setup_disk(self, container, settings): return self._owned("setup_disk", container=container, settings=settings)
    def teardown_disk(self, container, record): return self._owned("teardown_disk", container=container, record=record)
    def setup_net(self, container, settings): return self._owned("setup_net", container=container, settings=settings)
    def teardown_net(self, container, record): return self._owned("teardown_net", container=container, record=record)
    # requests
    def spawn(self, container, job, settings): return self._owned("spawn", container=container, job=job, settings=settings)
    def signal_job(self, container, job, signo): return self._owned("signal_job", container=container, job=job, signo=signo)
    def stop(self, container, kill, timeout): return self._owned("stop", container=container, kill=kill, timeout=timeout)
    def resize_tty(self, container, job, rows, columns):
        return self._owned("resize_tty", container=container, job=job, rows=rows, columns=columns)
    def net_in(self, container, host_port, container_port):
        return self._owned("net_in", container=container, host_port=host_port, container_port=container_port)
    def net_out(self, container, rule): return self._owned("net_out", container=container, rule=rule)
    def limit_bandwidth(self, container, rate, burst):
        return self._owned("limit_bandwidth", container=container, rate=rate, burst=burst)
    def limit_memory(self, container, limit): return self._owned("limit_memory", container=container, limit=limit)
    def limit_cpu(self, container, shares): return self._owned("limit_cpu", container=container, shares=shares)
    def limit_pids(self, container, limit): return self._owned("limit_pids", container=container, limit=limit)
    def limit_disk(self, container, limits): return self._owned("limit_disk", container=container, limits=limits)
    def copy_in(self, container, src_path, dst_path):
        return self._owned("copy_in", container=container, src_path=src_path, dst_path=dst_path)
    def copy_out(self, container, src_path, dst_path, owner):
        return self._owned("copy_out", container=container, src_path=src_path, dst_path=dst_path, owner=owner)
    # gathering
    def info(self, container, full: bool = True) -> dict:
        merged: dict = {}
        for part in self._call("info", container=container, full=full):
            merged.update(part or {})
        return merged
    def event_sources(self, container) -> list:
        return [src for part in self._call("event_sources", container=container) for src in (part or [])]
    def snapshot(self, container) -> dict:
        merged: dict = {}
        for part in self._call("snapshot", container=container):
            merged.update(part or {})
        return merged
    def recover(self, container, settings): return self._call("recover", container=container, settings=settings)
    # observers
    def _observe(self, name: str, **kwargs: Any) -> None:
        """Call every observer on its own: pluggy would stop at the first that raises, and
        one broken observer must neither break the server nor silence the others."""
        for impl in getattr(self.pm.hook, name).get_hookimpls():
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception:
                log.exception("observer %s of %s failed", self.pm.get_name(impl.plugin), name)
    def server_started(self, runtime) -> None: self._observe("server_started", runtime=runtime)
    def request_finished(self, frontend, request, seconds, error) -> None:
        self._observe("request_finished", frontend=frontend, request=request, seconds=seconds,
                      error=error)
    def container_event(self, container, event) -> None:
        self._observe("container_event", container=container, event=event)
    def health_routes(self) -> dict:
        """Every observer's pages; the first registered wins a path; one that fails is
        logged and serves nothing, like any observer."""
        merged: dict = {}
        for impl in self.pm.hook.health_routes.get_hookimpls():  # in registration order
            try:
                routes = impl.function() or {}
            except Exception:
                log.exception("observer %s of health_routes failed", self.pm.get_name(impl.plugin))
                continue
            merged = {**routes, **merged}  # an earlier plugin's path stays
        return merged


def hook_names() -> list[str]:
    """Every hookspec name, in declaration order."""
    return [name for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and getattr(fn, "warden_spec", None) is not None]
