"""Declares every topic explicitly: an implicitly created topic gets the
broker's default partition count, which breaks the co-partitioning of the
signals topic with the device table's changelog (domain.md §7)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from streams.settings import Settings

log = logging.getLogger(__name__)


def product_topics(settings: Settings) -> list[str]:
    """Every topic the product reads or writes (Faust's changelogs aside)."""
    return [
        settings.events_topic,
        settings.installs_topic,
        settings.signals_topic,
        settings.alerts_topic,
        settings.dlq_topic,
    ]


async def ensure_topics(settings: Settings, attempts: int = 30) -> None:
    """Create the missing topics with `settings.partitions` partitions.

    Retries while the broker is not reachable yet (it may be starting).
    Existing topics are left as they are; a signals topic with the wrong
    partition count is reported, because the device table would not match it.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers(), client_id=settings.app_id)
    for attempt in range(1, attempts + 1):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == attempts:
                raise
            log.warning("broker %s not reachable yet (attempt %d); retrying", settings.broker, attempt)
            await asyncio.sleep(min(attempt, 5))
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in product_topics(settings) if name not in existing]
        if missing:
            new_topics = [
                NewTopic(name, settings.partitions, settings.replication_factor) for name in missing
            ]
            # Another worker may have created them a moment ago.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new_topics)
            log.info("created topics %s with %d partitions", ", ".join(missing), settings.partitions)
        await _check_signals_partitions(admin, settings)
    finally:
        await admin.close()


async def _check_signals_partitions(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    described = await admin.describe_topics([settings.signals_topic])
    partitions = len(described[0]["partitions"]) if described else 0
    if partitions and partitions != settings.partitions:
        raise RuntimeError(
            f"topic {settings.signals_topic} has {partitions} partitions but KBWATCH_PARTITIONS is "
            f"{settings.partitions}: the device table must have as many partitions as its input"
        )
