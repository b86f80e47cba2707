"""Declares every topic explicitly: an implicitly created topic gets the
broker's default partition count, which breaks the co-partitioning of the
signals topic with the device table's changelog (domain.md §7)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from streams.security import aiokafka_options
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
        settings.evidence_topic,
    ]


def partitions_of(settings: Settings, topic: str) -> int:
    """The evidence topic has one partition: one worker owns every KB and the baseline."""
    return 1 if topic == settings.evidence_topic else settings.partitions


async def ensure_topics(settings: Settings, attempts: int = 30) -> None:
    """Create the missing topics (`settings.partitions` partitions, evidence 1).

    Retries while the broker is not reachable yet (it may be starting).
    Existing topics are left as they are; a signals or evidence topic with the
    wrong partition count is reported, because its table would not match it.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers(),
        client_id=settings.app_id,
        **aiokafka_options(settings),
    )
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
                NewTopic(name, partitions_of(settings, name), settings.replication_factor) for name in missing
            ]
            # Another worker may have created them a moment ago.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new_topics)
            log.info("created topics %s", ", ".join(missing))
        await _check_partitions(admin, settings)
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    for topic in (settings.signals_topic, settings.evidence_topic):
        described = await admin.describe_topics([topic])
        partitions = len(described[0]["partitions"]) if described else 0
        wanted = partitions_of(settings, topic)
        if partitions and partitions != wanted:
            raise RuntimeError(
                f"topic {topic} has {partitions} partitions but needs {wanted} "
                "(its table's changelog must have as many partitions as the topic)"
            )
