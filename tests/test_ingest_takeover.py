"""The sieve's loop when an input partition is taken away and comes back.

A fake consumer and producer stand in for aiokafka at the seam (the broker's
side of a rebalance is covered by the end-to-end tests); the sieve, the merge
and the clock are the real ones.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

from streams import codec, documents
from streams.ingest import Ingest
from streams.metrics import Metrics
from streams.settings import Settings
from streams.signals import Signal, SignalKind
from tests.builders import DEVICE, HOST, T0, minutes

OTHER = documents.Host(host_id="pc-other", name="PC-OTHER", arch="x86_64", build="26100.3775")


@dataclass(frozen=True)
class Message:
    offset: int
    value: bytes
    key: bytes | None = None


@dataclass
class Consumer:
    assigned: set[TopicPartition]
    ends: dict[TopicPartition, int]
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.ends.get(partition)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


@dataclass
class Producer:
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def noise(at_ms: int, offset: int, host: documents.Host = HOST) -> Message:
    return Message(offset, codec.dumps(documents.security_4624(host, at_ms, offset, "alice")))


def seen_devices(producer: Producer, signals_topic: str) -> list[str]:
    devices = []
    for topic, value in producer.sent:
        signal = Signal.from_wire(value) if topic == signals_topic else None
        if signal is not None and signal.kind is SignalKind.SEEN_MANY:
            devices += [device for device, _, _ in signal.seen]
    return devices


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

    asyncio.run(scenario())
    assert seen_devices(producer, settings.signals_topic).count(DEVICE) == 1
