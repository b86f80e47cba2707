"""The sieve's consumer loop: raw topics in, signals and dead letters out.

A bare aiokafka consumer, not a Faust agent: it sees every record of the
fleet, and Faust's per-event machinery costs ten times what the sieve itself
does (domain.md §7). It reads batches, sifts each message, produces the
few signals keyed by device, and commits a batch only after everything it
produced from it is acknowledged (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import dlq
from streams.metrics import Metrics
from streams.settings import Settings
from streams.sieve import Sieve, Source
from streams.signals import Signal
from streams.timeutil import wall_clock_ms

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 5_000


class Ingest:
    """Runs the sieve over the raw topics until stopped."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.sieve = Sieve(settings.max_message_bytes)
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._newest_event_ms = 0

    async def run(self) -> None:
        """Consume, sift and produce until `stop()` is called."""
        settings = self.settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers(),
            client_id=f"{settings.app_id}-sieve",
            linger_ms=5,
            acks="all",
        )
        self._consumer = AIOKafkaConsumer(
            settings.events_topic,
            settings.installs_topic,
            bootstrap_servers=settings.bootstrap_servers(),
            client_id=f"{settings.app_id}-sieve",
            group_id=f"{settings.app_id}-sieve",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_BATCH_RECORDS,
            session_timeout_ms=int(settings.session_timeout_seconds * 1000),
            heartbeat_interval_ms=max(1000, int(settings.session_timeout_seconds * 1000) // 3),
            rebalance_timeout_ms=int(settings.rebalance_timeout_seconds * 1000),
        )
        await self._producer.start()
        await self._consumer.start()
        log.info("sieve reading %s and %s", settings.events_topic, settings.installs_topic)
        try:
            while not self._stopping.is_set():
                batch = await self._consumer.getmany(timeout_ms=500, max_records=MAX_BATCH_RECORDS)
                if batch:
                    await self._sift_batch(batch)
                    await self._consumer.commit()
        finally:
            await self._consumer.stop()
            await self._producer.stop()

    def stop(self) -> None:
        """Ask the loop to finish its batch and return."""
        self._stopping.set()

    async def _sift_batch(self, batch: dict[Any, list[Any]]) -> None:
        assert self._producer is not None
        settings = self.settings
        outcomes: Counter[tuple[str, str]] = Counter()
        reasons: Counter[str] = Counter()
        pending: list[asyncio.Future[Any]] = []
        signals: list[Signal] = []
        newest_ms = 0
        for partition, messages in batch.items():
            source = Source.INSTALLS if partition.topic == settings.installs_topic else Source.WINLOGBEAT
            for message in messages:
                result = self.sieve.sift(source, message.value)
                outcomes[source.value, result.sifted.value] += 1
                newest_ms = max(newest_ms, result.event_ms)
                if result.signal is not None:
                    signals.append(result.signal)
                elif result.rejected is not None:
                    reasons[result.rejected.reason.value] += 1
                    headers = dlq.kafka_headers(
                        result.rejected, partition.topic, partition.partition, message.offset
                    )
                    pending.append(
                        await self._producer.send(
                            settings.dlq_topic, value=message.value, key=message.key, headers=headers
                        )
                    )
        # A batch holds a run of each partition; unkeyed producers spread one
        # device over all of them. Sending the few signals in event-time order
        # spares the device agent most late arrivals (and corrections).
        signals.sort(key=_event_order)
        for signal in signals:
            pending.append(
                await self._producer.send(
                    settings.signals_topic, value=signal.to_wire(), key=signal.device.encode()
                )
            )
        if pending:
            await asyncio.gather(*pending)
        self._count(outcomes, reasons, newest_ms)

    def _count(self, outcomes: Counter[tuple[str, str]], reasons: Counter[str], newest_ms: int) -> None:
        # Counted per batch, not per record: a labelled inc costs as much as sifting.
        for (source, outcome), count in outcomes.items():
            self.metrics.records.labels(source, outcome).inc(count)
        for reason, count in reasons.items():
            self.metrics.dlq.labels(reason).inc(count)
        self._newest_event_ms = max(self._newest_event_ms, newest_ms)
        if self._newest_event_ms:
            self.metrics.newest_event_time.set(self._newest_event_ms / 1000)
            self.metrics.event_time_lag.set((wall_clock_ms() - self._newest_event_ms) / 1000)


def _event_order(signal: Signal) -> int:
    return signal.time_ms
