"""Alert delivery: `kbwatch-alerts` -> Alertmanager's `/api/v2/alerts`, the way Prometheus does it.

A consumer of its own, apart from detection, so a slow or absent Alertmanager
never holds up a verdict. Every worker's delivery reads the whole alerts topic
from the beginning (keyed by fingerprint, so compaction keeps it small) and
rebuilds what is firing: a restart resumes exactly where it stopped, and
several workers sending the same alerts is what Alertmanager expects from a
pair of Prometheus servers (it deduplicates by labels). Firing alerts are
re-sent every minute with `endsAt` four minutes ahead, new ones once the topic
has been quiet for 2.5 s (so that devices failing together share a post and
thus a notification); a resolution is sent
with its `endsAt` and repeated for five minutes, because Alertmanager keeps no
durable state. While Alertmanager is unreachable, sends are retried with
exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import codec
from streams.metrics import Metrics
from streams.security import aiokafka_options
from streams.settings import Settings
from streams.timeutil import MINUTE_MS, to_rfc3339, wall_clock_ms

log = logging.getLogger(__name__)

RESEND_MS = MINUTE_MS
# Alertmanager skips `group_wait` for an alert whose `startsAt` is older than it, and a
# kbwatch alert starts when its episode did, in event time, minutes before it is sent.
# So devices failing together reach one notification only if they arrive in one post:
# after news, keep reading until the topic has been quiet this long (at most GATHER_MAX_MS).
# Alertmanager still inserts a post's alerts one by one and may flush the group after
# the first of them: under load, the first notification can miss some (README).
GATHER_QUIET_MS = 2500
GATHER_MAX_MS = 10_000
FIRING_HORIZON_MS = 4 * MINUTE_MS
RESOLVED_REPEAT_MS = 5 * MINUTE_MS
MAX_BACKOFF_SECONDS = 30.0


@dataclass(slots=True)
class _Tracked:
    alert: dict[str, Any]
    resolved_seen_ms: int = 0  # wall clock when its resolution arrived


class AlertBook:
    """What Alertmanager must hear now: pure bookkeeping, the clock passed in."""

    def __init__(self, generator_url: str) -> None:
        self._alerts: dict[str, _Tracked] = {}
        self._generator_url = generator_url

    def update(self, alert: dict[str, Any], arrived_ms: int) -> None:
        """Record the latest state of an alert (messages of one fingerprint arrive in order)."""
        resolved = alert["status"] == "resolved"
        self._alerts[alert["fingerprint"]] = _Tracked(alert, arrived_ms if resolved else 0)

    def payload(self, now_ms: int) -> list[dict[str, Any]]:
        """Every alert to post now; resolutions older than five minutes are dropped."""
        expired = [
            fingerprint
            for fingerprint, tracked in self._alerts.items()
            if tracked.resolved_seen_ms and now_ms - tracked.resolved_seen_ms > RESOLVED_REPEAT_MS
        ]
        for fingerprint in expired:
            del self._alerts[fingerprint]
        return [self._posted(tracked, now_ms) for tracked in self._alerts.values()]

    def counts(self) -> tuple[int, int]:
        """(firing, resolved being repeated)."""
        resolved = sum(1 for tracked in self._alerts.values() if tracked.resolved_seen_ms)
        return len(self._alerts) - resolved, resolved

    def _posted(self, tracked: _Tracked, now_ms: int) -> dict[str, Any]:
        alert = tracked.alert
        labels = alert["labels"]
        ends_at = alert["endsAt"] if tracked.resolved_seen_ms else to_rfc3339(now_ms + FIRING_HORIZON_MS)
        return {
            "labels": labels,
            "annotations": alert["annotations"],
            "startsAt": alert["startsAt"],
            "endsAt": ends_at,
            "generatorURL": f"{self._generator_url}?var-kb={quote(labels.get('kb', ''))}",
        }


class Delivery:
    """Reads the alerts topic and keeps every configured Alertmanager told."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.urls = [url.strip().rstrip("/") for url in settings.alertmanager_url.split(",") if url.strip()]
        self.book = AlertBook(settings.generator_url)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Deliver until stopped."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers(),
            client_id=f"{self.settings.app_id}-delivery",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **aiokafka_options(self.settings),
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            log.info("delivering %s to %s", self.settings.alerts_topic, ", ".join(self.urls))
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await self._loop(consumer, session)
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        topic = self.settings.alerts_topic
        while not self._stopping.is_set():
            numbers = consumer.partitions_for_topic(topic)
            if numbers:
                return [TopicPartition(topic, number) for number in sorted(numbers)]
            await consumer.topics()  # refreshes the metadata
            await asyncio.sleep(1)
        return []

    async def _loop(self, consumer: AIOKafkaConsumer, session: aiohttp.ClientSession) -> None:
        last_sent_ms = 0
        backoff = 1.0
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=1000)
            changed = self._read(batch)
            gathered_until = wall_clock_ms() + GATHER_MAX_MS
            while changed and not self._stopping.is_set():
                wait_ms = min(GATHER_QUIET_MS, gathered_until - wall_clock_ms())
                if wait_ms <= 0 or not self._read(await consumer.getmany(timeout_ms=wait_ms)):
                    break
            now_ms = wall_clock_ms()
            if not changed and now_ms - last_sent_ms < RESEND_MS:
                continue
            if await self._post(session, self.book.payload(now_ms)):
                last_sent_ms, backoff = now_ms, 1.0
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            firing, resolved = self.book.counts()
            self.metrics.delivery_alerts.labels("firing").set(firing)
            self.metrics.delivery_alerts.labels("resolved").set(resolved)

    def _read(self, batch: dict[Any, list[Any]]) -> bool:
        """Take a fetched batch into the book; True if it held any alert."""
        changed = False
        for messages in batch.values():
            for message in messages:
                try:
                    alert = codec.loads(message.value)
                    self.book.update(alert, message.timestamp or wall_clock_ms())
                    changed = True
                except (codec.DecodeError, KeyError, TypeError):
                    log.warning("skipping a malformed alert at offset %d", message.offset)
        return changed

    async def _post(self, session: aiohttp.ClientSession, alerts: list[dict[str, Any]]) -> bool:
        """Post to every Alertmanager; True when all of them took it."""
        if not alerts:
            return True
        body = codec.dumps(alerts)
        delivered = True
        for url in self.urls:
            try:
                async with session.post(
                    f"{url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    ok = response.status < 300
                    if not ok:
                        log.warning(
                            "Alertmanager %s answered %d: %s",
                            url,
                            response.status,
                            (await response.text())[:200],
                        )
            except (aiohttp.ClientError, TimeoutError) as error:
                ok = False
                log.warning("Alertmanager %s unreachable: %s", url, error)
            self.metrics.delivery_requests.labels("ok" if ok else "error").inc()
            if ok:
                self.metrics.delivery_last_success.set(wall_clock_ms() / 1000)
            delivered = delivered and ok
        return delivered
