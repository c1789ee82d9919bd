"""The gateway's Prometheus metrics, and the HTTP endpoint that serves them
(``agw serve --metrics-listen 127.0.0.1:9464``).

Counted as the work happens (module-level metrics, the process's default registry):

=====================================  ======================================================
``agw_activations_total{outcome}``     activations ended, by final state (completed, failed,
                                       rolledBack, partial, cancelled, fallout)
``agw_activation_duration_seconds``    submit to end, by outcome (histogram)
``agw_tasks_total{service,platform,outcome}``
``agw_task_phase_duration_seconds{phase,platform}``  each phase of each task (histogram)
``agw_device_errors_total{kind,platform}``  device errors by class (ConnectError, LockDeniedError…)
``agw_repairs_total{action,outcome}``  Rollback, fallout retry / force-rollback, recovery: how they ended
``agw_journal_commit_seconds``         one group-commit transaction (histogram)
``agw_grpc_server_*``                  calls, latency, malformed requests (:mod:`gateway.api.interceptors`)
``agw_event_deliveries_total{subscriber,outcome}``  result-event attempts (:mod:`gateway.events`):
                                       delivered, retry, dead
``agw_event_delivery_lag_seconds{subscriber}``  from the state change (the outbox row) to the
                                       receiver's 2xx (histogram)
``agw_event_deliveries_pending``,      deliveries waiting (due or not) and dead letters, counted in
``agw_event_deliveries_dead``          the journal by the dispatcher every ``refresh_s``
=====================================  ======================================================

Read at scrape time from the engine (:class:`EngineCollector`): ``agw_activations_running``,
``agw_devices_busy``, ``agw_device_queue_depth{device}`` (devices with changes waiting),
``agw_sessions_open`` and ``agw_fallout_open`` (tasks in fallout, counted in the journal every
``refresh_s``). Labels never carry parameters, ids or device output: only service, platform,
phase, outcome, error class and device name.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable, Iterator, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_PHASE_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

ACTIVATIONS = Counter("agw_activations_total", "Activations ended, by final state.", ["outcome"])
ACTIVATION_SECONDS = Histogram("agw_activation_duration_seconds", "From submit to the activation's end, by final state.",
                               ["outcome"], buckets=_SECONDS)
TASKS = Counter("agw_tasks_total", "Tasks ended, by service, platform and final state.",
                ["service", "platform", "outcome"])
PHASE_SECONDS = Histogram("agw_task_phase_duration_seconds", "Time of each phase of a task, by phase and platform.",
                          ["phase", "platform"], buckets=_PHASE_SECONDS)
DEVICE_ERRORS = Counter("agw_device_errors_total", "Errors from devices and their sessions, by class and platform.",
                        ["kind", "platform"])
REPAIRS = Counter("agw_repairs_total",
                  "Rollbacks, fallout actions and recoveries after a restart, by action and the activation's state after.",
                  ["action", "outcome"])
JOURNAL_COMMIT_SECONDS = Histogram("agw_journal_commit_seconds", "One journal write transaction (a group commit).",
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))

EVENT_DELIVERIES = Counter("agw_event_deliveries_total", "Result-event delivery attempts, by subscriber and outcome "
                           "(delivered, retry, dead).", ["subscriber", "outcome"])
EVENT_DELIVERY_LAG = Histogram("agw_event_delivery_lag_seconds", "From the state change to its event's delivery, "
                               "by subscriber.", ["subscriber"], buckets=_SECONDS + (3600, 21600, 86400))
EVENTS_PENDING = Gauge("agw_event_deliveries_pending", "Result-event deliveries waiting to be sent or retried.")
EVENTS_DEAD = Gauge("agw_event_deliveries_dead", "Result-event deliveries given up (dead letters: agw events replay).")


class TaskOutcome(Protocol):
    """What :func:`observe_activation` reads of each task."""

    @property
    def service(self) -> str: ...
    @property
    def platform(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def phases(self) -> Iterable[tuple[str, float]]: ...  # (phase, seconds)


def observe_activation(outcome: str, duration_s: float, tasks: Iterable[TaskOutcome]) -> None:
    ACTIVATIONS.labels(outcome).inc()
    ACTIVATION_SECONDS.labels(outcome).observe(duration_s)
    for t in tasks:
        TASKS.labels(t.service, t.platform, t.outcome).inc()
        for phase, seconds in t.phases:
            PHASE_SECONDS.labels(phase, t.platform).observe(seconds)


class EngineView(Protocol):
    """What the collector reads of the engine (:class:`gateway.engine.Engine`)."""

    def gauges(self) -> dict[str, Any]: ...


class EngineCollector(Collector):
    """The engine's gauges, read when Prometheus scrapes."""

    def __init__(self, engine: EngineView) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        g = self.engine.gauges()
        yield GaugeMetricFamily("agw_activations_running", "Activations and repairs running in this gateway.",
                                value=g["running"])
        yield GaugeMetricFamily("agw_devices_busy", "Devices with a change in progress.", value=g["busy"])
        queue = GaugeMetricFamily("agw_device_queue_depth", "Changes waiting for a device (devices with a queue).",
                                  labels=["device"])
        for device, depth in sorted(g["queues"].items()):
            queue.add_metric([device], depth)
        yield queue
        yield GaugeMetricFamily("agw_sessions_open", "Device sessions in the pool.", value=g["sessions"])
        if g["fallout"] is not None:
            yield GaugeMetricFamily("agw_fallout_open", "Tasks in fallout, waiting for a person or a retry.",
                                    value=g["fallout"])


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics-listen must be HOST:PORT, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsEndpoint:
    """``/metrics`` over HTTP for one engine: its gauges registered, the journal's fallout count
    refreshed every ``refresh_s``."""

    def __init__(self, engine: Any, *, listen: str, refresh_s: float = 15.0) -> None:
        self.engine, self.refresh_s = engine, refresh_s
        self.host, self.port = parse_listen(listen)
        self._collector = EngineCollector(engine)
        self._server: Any = None
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> int:
        """Serve; the port (useful with port 0)."""
        REGISTRY.register(self._collector)
        try:
            self._server, _ = start_http_server(self.port, addr=self.host)
        except BaseException:
            REGISTRY.unregister(self._collector)
            raise
        self.port = int(self._server.server_port)
        self._refresher = asyncio.create_task(self._refresh(), name="metrics-refresh")
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self.port

    async def _refresh(self) -> None:
        while True:
            try:
                await self.engine.refresh_gauges()
            except Exception as exc:  # noqa: BLE001 - a gauge must not stop the gateway
                log.warning("metrics refresh failed: %s", type(exc).__name__)
            await asyncio.sleep(self.refresh_s)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        REGISTRY.unregister(self._collector)


__all__ = [
    "ACTIVATIONS", "ACTIVATION_SECONDS", "DEVICE_ERRORS", "EVENTS_DEAD", "EVENTS_PENDING", "EVENT_DELIVERIES",
    "EVENT_DELIVERY_LAG", "EngineCollector", "JOURNAL_COMMIT_SECONDS",
    "MetricsEndpoint", "PHASE_SECONDS", "REPAIRS", "TASKS", "observe_activation", "parse_listen",
]
