"""The observer in a server on fake drivers (FakeExec runs jobs with the host's bash): requests
through the Warden client, /metrics scraped over HTTP from the health-check port."""

from __future__ import annotations

import importlib.metadata
import threading
from dataclasses import dataclass

import pytest

from warden_framework import hookimpl
from warden_framework.client import Client, ServerError
from warden_framework.container import OUT_OF_MEMORY, OUTPUT_EXCEEDED
from warden_framework.plugins import EXTRA_PLUGINS_GROUP, Hooks, build_plugin_manager
from warden_framework.testing.fakes import FAKE_DRIVERS
from warden_framework.testing.server import ServerThread, fake_settings, running_server

from warden_metrics.observer import MetricsObserver

DURATIONS = "warden_request_duration_seconds"


class CleanupGate:
    """Holds every destroy's cleanup at teardown_fs while closed, so a test sees it pending."""

    def __init__(self) -> None:
        self.is_open = threading.Event()
        self.is_open.set()

    @hookimpl(wrapper=True)
    def teardown_fs(self, container, record):
        self.is_open.wait(30)
        return (yield)


@dataclass
class Served:
    srv: ServerThread
    client: Client
    gate: CleanupGate

    def container(self, handle: str):
        return self.srv.orchestrator.lookup(handle)


@pytest.fixture
def served(tmp_path, health_port):
    settings = fake_settings(tmp_path, health_check_server={"port": health_port})
    gate = CleanupGate()
    with running_server(settings, FAKE_DRIVERS, extra_plugins=[MetricsObserver(), gate]) as srv:
        try:
            with Client(settings.server.unix_domain_path) as client:
                yield Served(srv, client, gate)
        finally:
            gate.is_open.set()


def test_page_of_an_idle_server_lists_empty_states_and_the_configured_pool_sizes(served, scrape):
    page = scrape()
    settings = served.srv.settings
    assert page("warden_containers", state="active") == 0
    assert page("warden_containers", state="stopped") == 0
    assert page("warden_jobs_running") == 0
    assert page("warden_destroy_cleanups_pending") == 0
    assert page("warden_depot_entries") == 0
    assert page("warden_oom_events_total") == 0
    sizes = {"network": settings.network.effective_pool().num_addresses // 4,
             "port": settings.port.pool_size, "uid": settings.user.pool_size}
    for pool, size in sizes.items():
        assert page("warden_pool_size", pool=pool) == size
        assert page("warden_pool_in_use", pool=pool) == 0


def test_a_container_s_life_moves_states_pools_jobs_depot_and_request_counts(served, scrape):
    c = served.client
    handle = c.create().handle.decode()
    page = scrape.until(lambda p: p.requests("CreateRequest") == 1)
    assert page("warden_containers", state="active") == 1
    assert page("warden_depot_entries") == 1
    assert page("warden_pool_in_use", pool="network") == 1
    assert page("warden_pool_in_use", pool="uid") == 1
    assert page("warden_pool_in_use", pool="port") == 0
    assert page(f"{DURATIONS}_bucket", frontend="warden", request="CreateRequest", le="+Inf") == 1
    assert 0 < page(f"{DURATIONS}_sum", frontend="warden", request="CreateRequest") < 10

    c.net_in(handle=handle)
    c.spawn(handle=handle, script="sleep 60")
    assert c.run(handle=handle, script="exit 3").exit_status == 3
    page = scrape.until(lambda p: p.requests("RunRequest") == 1)
    assert page("warden_pool_in_use", pool="port") == 1
    assert page("warden_jobs_running") == 1  # the sleep; the Run's job has ended

    c.stop(handle=handle, kill=True)
    page = scrape()
    assert (page("warden_containers", state="active"), page("warden_containers", state="stopped")) == (0, 1)

    served.gate.is_open.clear()
    c.destroy(handle=handle)
    page = scrape.until(lambda p: p.requests("DestroyRequest") == 1)
    assert page("warden_containers", state="stopped") == 0
    assert page("warden_destroy_cleanups_pending") == 1
    assert page("warden_depot_entries") == 1  # the directory goes last
    assert page("warden_pool_in_use", pool="network") == 1

    served.gate.is_open.set()
    served.srv.call(served.srv.server.wait_cleanups)
    page = scrape()
    assert page("warden_destroy_cleanups_pending") == 0
    assert page("warden_depot_entries") == 0
    assert [page("warden_pool_in_use", pool=p) for p in ("network", "port", "uid")] == [0, 0, 0]
    assert page("warden_jobs_running") == 0


def test_errors_are_counted_by_request_type(served, scrape):
    c = served.client
    c.ping()
    for _ in range(2):
        with pytest.raises(ServerError):
            c.info(handle="nope")
    with pytest.raises(ServerError):
        c.destroy(handle="nope")
    page = scrape.until(lambda p: p.requests("DestroyRequest") == 1)
    assert page("warden_request_errors_total", frontend="warden", request="InfoRequest") == 2
    assert page("warden_request_errors_total", frontend="warden", request="DestroyRequest") == 1
    assert not page.has("warden_request_errors_total", frontend="warden", request="PingRequest")
    assert (page.requests("PingRequest"), page.requests("InfoRequest")) == (1, 2)


def test_out_of_memory_is_counted_once_per_container_and_other_events_not(served, scrape):
    c = served.client
    first, second = (served.container(c.create().handle.decode()) for _ in range(2))
    orchestrator = served.srv.orchestrator
    orchestrator.out_of_memory(first)
    orchestrator.record_event(first, OUT_OF_MEMORY)  # a container's events are a set
    orchestrator.record_event(second, OUTPUT_EXCEEDED)
    assert scrape()("warden_oom_events_total") == 1
    orchestrator.out_of_memory(second)
    page = scrape()
    assert page("warden_oom_events_total") == 2
    assert page("warden_containers", state="stopped") == 2


def test_the_entry_point_registers_an_instance_whose_hooks_are_bound():
    """What warden-server does with the installed distribution: load `warden.plugins`."""
    names = {ep.name for ep in importlib.metadata.entry_points(group=EXTRA_PLUGINS_GROUP)}
    if "metrics" not in names:
        pytest.skip("warden-metrics is not installed in this venv (scripts/bootstrap.sh, or "
                    "pip install -e plugins/metrics)")
    from warden_metrics.observer import PLUGIN

    pm = build_plugin_manager({}, load_entry_points=True)
    assert pm.get_plugin("metrics") is PLUGIN
    hooks = Hooks(pm, set())
    labels = {"frontend": "entry-point-test", "request": "PingRequest"}
    before = PLUGIN.registry.get_sample_value(f"{DURATIONS}_count", labels) or 0
    hooks.request_finished("entry-point-test", "PingRequest", 0.001, None)  # logs, never raises
    assert PLUGIN.registry.get_sample_value(f"{DURATIONS}_count", labels) == before + 1
    assert hooks.health_routes()["/metrics"] == PLUGIN.page
