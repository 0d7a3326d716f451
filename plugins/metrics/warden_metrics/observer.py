"""The metrics observer (hookspecs.py, "Observers"): request durations and errors and OOM
events counted as they happen, the server's state read at scrape time (collector.py), all in a
private registry served as /metrics on the health-check port.

The entry point names PLUGIN, an instance: pluggy registers the object an entry point loads,
and a class would register unbound hook functions. A test makes its own MetricsObserver.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from warden_framework import hookimpl
from warden_framework.container import OUT_OF_MEMORY

from .collector import RuntimeCollector

# What generate_latest writes; newer prometheus_client versions name a later version in
# CONTENT_TYPE_LATEST, which older scrapers do not expect.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From a Ping (~100 us) to a Create or Destroy (tens to hundreds of ms) and a Run's job;
# Link and Stream wait for a job to end and mostly land in +Inf.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricsObserver:
    """The `metrics` observer. Its hooks: server_started (keeps the runtime for the
    collector), request_finished (durations and errors by front end and request type),
    container_event (OOM events), health_routes (/metrics)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.durations = Histogram(
            "warden_request_duration_seconds",
            "Time from a request's arrival to its last answer, by front end and request type "
            "(its _count is the number of requests answered)",
            ["frontend", "request"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.errors = Counter(
            "warden_request_errors", "Requests answered with an error, by front end and type",
            ["frontend", "request"], registry=self.registry)
        self.out_of_memory = Counter(
            "warden_oom_events", "Containers stopped because the kernel killed a process for "
            "memory", registry=self.registry)
        self.state = RuntimeCollector()
        self.registry.register(self.state)

    @hookimpl
    def server_started(self, runtime) -> None:
        self.state.runtime = runtime

    @hookimpl
    def request_finished(self, frontend, request, seconds, error) -> None:
        """On the event loop after every request: a label look-up and a bucket search, about
        2 us (3 with an error; README, "Cost")."""
        self.durations.labels(frontend, request).observe(seconds)
        if error is not None:
            self.errors.labels(frontend, request).inc()

    @hookimpl
    def container_event(self, container, event) -> None:
        if event == OUT_OF_MEMORY:
            self.out_of_memory.inc()

    @hookimpl
    def health_routes(self) -> dict:
        return {"/metrics": self.page}

    def page(self) -> tuple[str, bytes]:
        """The text exposition format of every metric; runs in the health server's thread."""
        return CONTENT_TYPE, generate_latest(self.registry)


PLUGIN = MetricsObserver()
