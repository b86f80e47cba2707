"""The worker: topics, the device table, the agent, the sieve task and the web pages.

The only module that attaches things to the Faust app. The agent stays thin:
decode a signal, hand it to the engine, send what comes back, count it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import generate_latest

from streams import dlq
from streams.app import create_app
from streams.engine import Engine
from streams.ingest import Ingest
from streams.metrics import Metrics
from streams.outcomes import Rejected, RejectReason
from streams.settings import Settings
from streams.signals import Signal

log = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 60.0
DEVICE_TABLE = "devices"
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
    app = create_app(settings)
    signals_topic = app.topic(
        settings.signals_topic, key_type=str, value_type=bytes, partitions=settings.partitions
    )
    alerts_topic = app.topic(settings.alerts_topic, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes)
    devices = app.Table(
        DEVICE_TABLE,
        key_type=str,
        value_type=bytes,
        partitions=settings.partitions,
        help="Per-device state (streams.device.DeviceState), expired in event time.",
    )
    engine = Engine(devices, settings.catalog(), metrics)
    ingest = Ingest(settings, metrics)

    @app.agent(signals_topic, name="device-agent")
    async def device_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                signal = Signal.from_wire(event.value)
            except (ValueError, KeyError, TypeError) as error:
                # Only something other than our sieve writes such a thing.
                rejected = Rejected(RejectReason.BAD_VALUE, f"not a kbwatch signal: {error}"[:200])
                message = event.message
                headers = dlq.kafka_headers(rejected, message.topic, message.partition, message.offset)
                await dlq_topic.send(key=message.key, value=event.value, headers=headers)
                metrics.dlq.labels(rejected.reason.value).inc()
                continue
            for alert in engine.process(signal):
                await alerts_topic.send(key=alert.fingerprint.encode(), value=alert.to_wire())

    @app.task
    async def sieve() -> None:
        await ingest.run()

    @app.timer(interval=SWEEP_INTERVAL_SECONDS)
    async def sweep() -> None:
        forgotten = engine.sweep()
        if forgotten:
            log.info("forgot %d idle devices (fleet event time %d)", forgotten, engine.fleet_time_ms)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.registry), content_type=METRICS_CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    return Worker(app=app, settings=settings, metrics=metrics, engine=engine, ingest=ingest)
