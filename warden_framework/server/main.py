"""`warden-server [--config FILE]`: load config and drivers, set up the host, recover, serve.
Without --config the packaged default (warden_framework/data/warden.yml, absolute paths);
`--print-config` prints the effective configuration and exits.

SIGUSR2 drains (containers and jobs survive, exit 0); SIGTERM and SIGINT do the same at once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Callable

from .. import depot
from ..config import Settings, load_settings, settings_to_yaml
from ..drivers import Driver, load_drivers
from ..errors import ConfigError, DriverUnavailable
from ..frontends import FrontEnd, load_frontend_classes
from ..orchestrator import Orchestrator
from ..plugins import Hooks, build_plugin_manager
from ..pools import Pools
from .health import start_health_server
from .lifecycle import Pidfile, raise_nofile_limit, setup_logging
from .runtime import Runtime

log = logging.getLogger("warden_framework.server")
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "data" / "warden.yml"


def build_orchestrator(settings: Settings, overrides: dict[str, type[Driver]] | None = None,
                       extra_plugins: list | None = None, load_entry_points: bool = True) -> Orchestrator:
    """Everything but the event loop: drivers, plugin manager, pools, orchestrator."""
    drivers = load_drivers(settings, overrides)
    pm = build_plugin_manager(drivers, extra_plugins, load_entry_points)
    hooks = Hooks(pm, set(drivers))
    return Orchestrator(settings, hooks, Pools(settings))


async def serve(settings: Settings, orchestrator: Orchestrator, stop: asyncio.Event | None = None,
                ready: Callable[[Runtime], None] | None = None,
                frontends: dict[str, type[FrontEnd]] | None = None) -> int:
    """Serve until SIGUSR2/SIGTERM/SIGINT (main thread) or until `stop` is set (tests).
    `ready` gets the runtime once every front end listens; `frontends` are the configured
    front ends' classes (loaded from settings when not given)."""
    if frontends is None:
        frontends = load_frontend_classes(settings)
    depot.prepare(settings.depot)
    await asyncio.to_thread(orchestrator.hooks.setup_host, settings)
    # What exists now (modules, plugins, config: ~74,000 objects) lives as long as the
    # process: the collector need not walk it again. Each full collection held the GIL, and
    # with it every request, for as long as its walk took: 28-57 ms with 1,000 containers,
    # 6-29 ms with this. Containers come after, so their cycles are still collected.
    gc.freeze()
    recovered = await asyncio.to_thread(orchestrator.recover_all)
    log.info("recovered %d containers", len(recovered))
    runtime = Runtime(settings, orchestrator)
    await runtime.start(recovered)
    front_ends = [cls(settings, runtime, settings.frontends[name]) for name, cls in frontends.items()]
    started: list[FrontEnd] = []
    health = None
    pidfile = Pidfile(settings.server.pidfile) if settings.server.pidfile else None
    # From the first listener on, any failure (a front end, the health port, the pidfile)
    # closes everything started, so the process exits instead of serving half.
    try:
        for front_end in front_ends:
            await front_end.start()
            started.append(front_end)
        orchestrator.hooks.server_started(runtime)
        if settings.health_check_server.port is not None:
            health = await start_health_server(settings.health_check_server.port,
                                               orchestrator.hooks.health_routes())
        if pidfile:
            pidfile.acquire()
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signo in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signo, stop.set)
        if ready is not None:
            ready(runtime)
        await stop.wait()
        log.info("draining")
    finally:
        await asyncio.gather(*(front_end.drain() for front_end in started))
        try:
            await runtime.drain()
        finally:
            if health is not None:
                health.close()
            await runtime.close()
            if pidfile:
                pidfile.release()
    log.info("drained; exiting")
    return 0


def main(argv: list[str] | None = None, extra_plugins: list | None = None) -> int:
    """The command line. `extra_plugins` are registered beside the drivers (the test kit's
    fault injection starts the server this way: warden_framework.testing.faults)."""
    parser = argparse.ArgumentParser(prog="warden-server", description=__doc__)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help=f"YAML config file (default: the packaged {DEFAULT_CONFIG})")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective configuration (defaults filled in) and exit")
    parser.add_argument("--teardown-host", action="store_true",
                        help="remove the host-wide state (chains, parent cgroups) and exit; "
                             "refused while the depot holds containers")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.print_config:
            print(f"# effective configuration of {Path(args.config).resolve()}")
            print(settings_to_yaml(settings), end="")
            return 0
        setup_logging(settings.logging.level, settings.logging.file)
        raise_nofile_limit()
        frontends = load_frontend_classes(settings)
        orchestrator = build_orchestrator(settings, extra_plugins=extra_plugins)
    except (ConfigError, DriverUnavailable) as exc:
        print(f"warden-server: {exc}", file=sys.stderr)
        return 2
    if args.teardown_host:
        return teardown_host(settings, orchestrator)
    return asyncio.run(serve(settings, orchestrator, frontends=frontends))


def teardown_host(settings: Settings, orchestrator: Orchestrator) -> int:
    left = sorted(p.name for p in settings.depot.iterdir()) if settings.depot.is_dir() else []
    if left:
        print(f"warden-server: {settings.depot} still holds containers: {', '.join(left)}; "
              f"destroy them first", file=sys.stderr)
        return 1
    orchestrator.hooks.teardown_host(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
