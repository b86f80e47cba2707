"""The sieve's loop when an input partition is taken away and comes back.

Fakes stand in for aiokafka at the seam (tests/ingest_fakes.py); the sieve,
the merge and the clock are the real ones.
"""

from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition

from streams import documents
from streams.ingest import Ingest
from streams.metrics import Metrics
from streams.settings import Settings
from tests.builders import DEVICE, T0, minutes
from tests.ingest_fakes import Consumer, Producer, noise, seen_devices

OTHER = documents.Host(host_id="pc-other", name="PC-OTHER", arch="x86_64", build="26100.3775")


def test_a_held_seen_of_a_partition_taken_away_is_sent_when_the_partition_comes_back():
    settings = Settings()
    ingest = Ingest(settings, Metrics.create())
    first, second = TopicPartition(settings.events_topic, 0), TopicPartition(settings.events_topic, 1)
    consumer = Consumer({first, second}, {first: 1, second: 1})
    producer = Producer()
    ingest._consumer, ingest._producer = consumer, producer
    record = noise(T0 + minutes(5), 0)

    async def scenario() -> None:
        # The device's `seen` is held: the second partition is unread, and may hold earlier records.
        await ingest._sift_batch({first: [record]})
        assert seen_devices(producer, settings.signals_topic) == []
        # The first partition goes to another worker, which would read it from the commit
        # (nothing of it committed here); then it comes back, and is read again.
        consumer.assigned = {second}
        await ingest._sift_batch({})
        consumer.assigned = {first, second}
        await ingest._sift_batch({first: [record], second: [noise(T0 + minutes(6), 0, host=OTHER)]})
        await ingest._sift_batch({})  # nothing more: what waits is sent

    asyncio.run(scenario())
    assert seen_devices(producer, settings.signals_topic).count(DEVICE) == 1
