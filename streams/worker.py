"""The worker: topics, the device table, the agent, the sieve task and the web pages.

The only module that attaches things to the Faust app. The agent stays thin:
decode a signal, hand it to the engine, send what comes back, count it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import generate_latest

from streams import __version__, dlq
from streams.alerts import Alert
from streams.app import create_app
from streams.delivery import Delivery
from streams.engine import Engine
from streams.evidence import Evidence
from streams.fleet import FleetEngine
from streams.ingest import Ingest, describe_partitions
from streams.metrics import Metrics
from streams.outcomes import Rejected, RejectReason
from streams.rebalance_acks import guard_rebalance_skips
from streams.settings import Settings
from streams.signals import Signal, SignalKind

log = logging.getLogger(__name__)

DEVICE_TABLE = "devices"
WATCH_TABLE = "silence-watches"
FLEET_TABLE = "fleet"
# Prometheus's text format; aiohttp refuses a charset inside content_type.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


@dataclass(frozen=True, slots=True)
class Worker:
    """A configured worker: run it with `faust.Worker(worker.app, ...)`."""

    app: faust.App
    settings: Settings
    metrics: Metrics
    engine: Engine
    ingest: Ingest


def build_worker(settings: Settings, metrics: Metrics | None = None) -> Worker:
    """Attach the device agent, the sieve, the sweep and `/metrics` to a new app."""
    metrics = metrics or Metrics.create()
    # Which client reads the input, and which loop runs it, are this worker's own facts,
    # for dashboards and a page's triage.
    metrics.build.info(
        {"version": __version__, "sieve_client": settings.sieve_client, "event_loop": settings.event_loop}
    )
    app = create_app(settings)
    signals_topic = app.topic(
        settings.signals_topic, key_type=str, value_type=bytes, partitions=settings.partitions
    )
    alerts_topic = app.topic(settings.alerts_topic, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes)
    evidence_topic = app.topic(settings.evidence_topic, key_type=str, value_type=bytes, partitions=1)
    catalog = settings.catalog()
    devices = _table(app, DEVICE_TABLE, settings.partitions, "Per-device state (streams.device.DeviceState).")
    watches = _table(app, WATCH_TABLE, settings.partitions, "Devices waiting for a silence verdict.")
    fleet_table = _table(app, FLEET_TABLE, 1, "Per-KB evidence and the baseline (streams.fleet).")
    engine = Engine(devices, catalog, metrics, watches)
    fleet = FleetEngine(fleet_table, catalog, metrics, settings.partitions)
    health = Health()
    ingest = Ingest(settings, metrics)

    async def dead_letter(event: Any, error: Exception) -> None:
        # Only something other than kbwatch itself writes such a thing.
        rejected = Rejected(RejectReason.BAD_VALUE, f"not a kbwatch record: {error}"[:200])
        message = event.message
        headers = dlq.kafka_headers(rejected, message.topic, message.partition, message.offset)
        await dlq_topic.send(key=message.key, value=event.value, headers=headers)
        metrics.dlq.labels(rejected.reason.value).inc()

    async def send_alerts(alerts: list[Alert]) -> None:
        for alert in alerts:
            await alerts_topic.send(key=alert.fingerprint.encode(), value=alert.to_wire())

    @app.agent(signals_topic, name="device-agent")
    async def device_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                signal = Signal.from_wire(event.value)
            except (ValueError, KeyError, TypeError) as error:
                await dead_letter(event, error)
                continue
            partition = event.message.partition
            if signal.kind is SignalKind.TICK:
                output = engine.tick(signal.time_ms, partition, signal.coverage)
            elif signal.kind is SignalKind.SEEN_MANY:
                output = engine.process_seen(signal.seen, partition)
            else:
                output = engine.process(signal, partition)
            await send_alerts(output.alerts)
            await send_alerts(output.resent)
            for evidence in output.evidence:
                await evidence_topic.send(key=evidence.key, value=evidence.to_wire())

    @app.agent(evidence_topic, name="fleet-agent")
    async def fleet_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                evidence = Evidence.from_wire(event.value)
            except (ValueError, KeyError, TypeError) as error:
                await dead_letter(event, error)
                continue
            message = event.message
            produced_ms = int((message.timestamp or 0) * 1000)  # Faust gives seconds
            await send_alerts(fleet.process(evidence, message.offset, produced_ms))

    @app.task
    async def sieve() -> None:
        # The services Faust has just started live as long as the worker, too (streams.cli).
        gc.freeze()
        try:
            await ingest.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Liveness turns false and the orchestrator restarts the worker;
            # a worker that reads nothing must not look healthy.
            log.exception("the sieve stopped")
            health.sieve_failed = True
            raise

    @app.on_partitions_assigned.connect
    async def log_takeover(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Before the first revocation that could skip a message: this runs at every
        # assignment, and the first comes before any partition can be revoked.
        guard_rebalance_skips(app)
        # The device and fleet agents' share after a rebalance: how a takeover shows in the log.
        assigned = args[0] if args else kwargs.get("assigned", ())
        log.info("agents: partitions assigned: %s", describe_partitions(assigned) or "none")
        # Whoever wrote their states last may have died before sending what they caused.
        engine.taken_over(tp.partition for tp in assigned if tp.topic == settings.signals_topic)
        if any(tp.topic == settings.evidence_topic for tp in assigned):
            fleet.taken_over()
        set_fetch_max_wait(app, settings.fetch_max_wait_ms)

    @app.on_before_shutdown.connect
    async def drain_sieve(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust's own consumer has stopped and committed; the sieve finishes
        # the batch in hand, so a SIGTERM re-reads nothing on the next start.
        if await ingest.drain(settings.shutdown_grace_seconds):
            log.info("sieve stopped: last batch sent and committed")
        else:
            log.warning(
                "sieve did not finish within %.0f s; its last batch is read again on restart",
                settings.shutdown_grace_seconds,
            )

    if settings.alertmanager_url:
        delivery = Delivery(settings, metrics)

        @app.task
        async def deliver() -> None:
            await delivery.run()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.registry), content_type=METRICS_CONTENT_TYPE)

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        return _answer(web, health.alive())

    @app.page("/healthz")  # the 0.3 name of /livez
    async def healthz(web: Any, request: Any) -> Any:
        return _answer(web, health.alive())

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        return _answer(web, health.ready(app, ingest))

    return Worker(app=app, settings=settings, metrics=metrics, engine=engine, ingest=ingest)


@dataclass(slots=True)
class Health:
    """What `/livez` and `/readyz` answer."""

    sieve_failed: bool = False

    def alive(self) -> list[str]:
        """Problems that a restart mends; none means alive."""
        return ["the sieve stopped with an error"] if self.sieve_failed else []

    def ready(self, app: faust.App, ingest: Ingest) -> list[str]:
        """Problems that mean: do not count on this worker yet (or any more)."""
        problems = self.alive()
        if getattr(app, "rebalancing", False):
            problems.append("rebalancing")
        if getattr(app, "in_recovery", False):
            problems.append("recovering tables")
        if not ingest.polling:
            problems.append("the sieve has not joined its consumer group")
        return problems


def set_fetch_max_wait(app: faust.App, fetch_max_wait_ms: int) -> bool:
    """Give the agents' consumer `KBWATCH_FETCH_MAX_WAIT_MS`; False if it cannot be reached.

    Faust builds its aiokafka consumer with a fixed 1,500 ms and no setting for
    it, so the value is set on the consumer's fetcher once it exists.
    """
    thread = getattr(app.consumer, "_thread", None)
    fetcher = getattr(getattr(thread, "_consumer", None), "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
        log.warning("could not set the agents' fetch wait (Faust or aiokafka changed?)")
        return False
    fetcher._fetch_max_wait_ms = fetch_max_wait_ms
    return True


def _answer(web: Any, problems: list[str]) -> Any:
    if problems:
        return web.json({"status": "unavailable", "problems": problems}, status=503)
    return web.json({"status": "ok"})


def _table(app: faust.App, name: str, partitions: int, help_text: str) -> Any:
    """A changelog-backed table of encoded states, as many partitions as its source topic."""
    return app.Table(name, key_type=str, value_type=bytes, partitions=partitions, help=help_text)
