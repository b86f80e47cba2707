"""The sieve's librdkafka consumer on the embedded broker: the aiokafka calls it stands in for."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.bench import stat_cpu_seconds
from streams.broker import EmbeddedBroker
from streams.rdkafka import RdkafkaConsumer, Record, rdkafka_config
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.e2e.conftest import isolated_settings

pytestmark = pytest.mark.e2e


async def _produce_to(settings: Settings, partition: int, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers())
    await producer.start()
    try:
        for value in values:
            await producer.send(settings.events_topic, value=value, key=b"k", partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


Batch = dict[TopicPartition, list[Record]]


async def _read(consumer: RdkafkaConsumer, wanted: int, timeout: float = 30.0) -> Batch:
    """Batches merged by partition until `wanted` records came."""
    merged: Batch = {}
    deadline = time.monotonic() + timeout
    while sum(len(records) for records in merged.values()) < wanted:
        assert time.monotonic() < deadline, f"only {merged} within {timeout} s"
        for partition, records in (await consumer.getmany(timeout_ms=500, max_records=5_000)).items():
            merged.setdefault(partition, []).extend(records)
    return merged


def test_it_reads_commits_rewinds_and_pauses_as_the_sieve_expects(broker: EmbeddedBroker, tmp_path: Path):
    settings = isolated_settings(broker, tmp_path)
    asyncio.run(ensure_topics(settings))
    first, second = TopicPartition(settings.events_topic, 0), TopicPartition(settings.events_topic, 1)

    async def scenario() -> None:
        await _produce_to(settings, 0, [f"a{index}".encode() for index in range(30)])
        await _produce_to(settings, 1, [f"b{index}".encode() for index in range(20)])
        group = f"{settings.app_id}-{uuid.uuid4().hex[:6]}"
        consumer = RdkafkaConsumer(rdkafka_config(settings, group, group))
        consumer.subscribe([settings.events_topic, settings.installs_topic])
        await consumer.start()
        try:
            read = await _read(consumer, 50)
            assert [record.value for record in read[first]] == [f"a{index}".encode() for index in range(30)]
            assert [record.offset for record in read[second]] == list(range(20))
            assert read[first][0].key == b"k"
            assert {first, second} <= consumer.assignment()
            assert consumer.highwater(first) == 30 and consumer.highwater(second) == 20
            assert consumer.partitions_for_topic(settings.events_topic) == set(range(settings.partitions))

            assert await consumer.committed(first) is None
            await consumer.commit({first: 12, second: 20})
            assert await consumer.committed(first) == 12
            assert await consumer.committed(second) == 20

            # The sieve's rewind: back to the commit, and to the start where none is.
            consumer.seek(first, 12)
            again = await _read(consumer, 18)
            assert [record.offset for record in again[first]] == list(range(12, 30))
            await consumer.seek_to_beginning(second)
            assert [record.offset for record in (await _read(consumer, 20))[second]] == list(range(20))

            # A paused partition is not fetched; resumed, it is.
            consumer.pause(first)
            await _produce_to(settings, 0, [b"late-a"])
            await _produce_to(settings, 1, [b"late-b"])
            only = await _read(consumer, 1)
            assert list(only) == [second]
            consumer.resume(first)
            assert [record.value for record in (await _read(consumer, 1))[first]] == [b"late-a"]

            # An empty wait ends at its timeout, not before and not much after.
            started = time.monotonic()
            assert await consumer.getmany(timeout_ms=300, max_records=5_000) == {}
            assert 0.25 <= time.monotonic() - started < 5
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def _fetch_thread_cpu_seconds() -> float:
    """CPU time so far of this process's librdkafka broker threads (`rdk:broker...`, Linux `/proc`)."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        try:
            fetching = task.joinpath("comm").read_text().startswith("rdk:broker")
        except OSError:
            continue  # a thread that ended meanwhile
        if fetching:
            total += stat_cpu_seconds(task / "stat")
    return total


def test_its_fetch_thread_rests_while_the_sieve_is_behind(broker: EmbeddedBroker, tmp_path: Path):
    """A reader behind its topic keeps librdkafka's queue full; the fetch thread must then wait.

    With `fetch.queue.backoff.ms` at 0 it looked for room again at once, over and over:
    a whole core here (2.0 s of CPU in 2 s), half a core in the bench, spent on nothing
    while the sieve worked through its backlog.
    """
    settings = isolated_settings(broker, tmp_path)
    asyncio.run(ensure_topics(settings))

    async def scenario() -> float:
        await _produce_to(settings, 0, [b"x" * 1000 for _ in range(10_000)])
        group = f"{settings.app_id}-{uuid.uuid4().hex[:6]}"
        # A queue full at 100 records or 500 KB, which 10,000 records keep full.
        config = {
            **rdkafka_config(settings, group, group),
            "queued.min.messages": 100,
            "queued.max.messages.kbytes": 500,
        }
        consumer = RdkafkaConsumer(config)
        consumer.subscribe([settings.events_topic, settings.installs_topic])
        await consumer.start()
        try:
            deadline = time.monotonic() + 30
            while not await consumer.getmany(timeout_ms=500, max_records=10):
                assert time.monotonic() < deadline, "no record within 30 s"  # the group forms first
            await asyncio.sleep(1.0)  # the queue fills up
            before = _fetch_thread_cpu_seconds()
            await asyncio.sleep(2.0)  # a sieve busy with what it read
            return _fetch_thread_cpu_seconds() - before
        finally:
            await consumer.stop()

    spent = asyncio.run(scenario())
    assert spent < 0.3, f"librdkafka's fetch thread took {spent:.2f} s of CPU in 2 s of a full queue"


def test_an_unreachable_broker_is_a_kafka_error_for_the_sieve(tmp_path: Path):
    """The sieve retries on aiokafka's `KafkaError`: librdkafka's failures must arrive as one."""
    settings = Settings.from_env({}, broker="127.0.0.1:9", data_dir=str(tmp_path))
    consumer = RdkafkaConsumer(
        {**rdkafka_config(settings, "nobody", "nobody"), "socket.connection.setup.timeout.ms": 1000}
    )
    consumer.subscribe([settings.events_topic])

    async def scenario() -> None:
        await consumer.start()
        try:
            with pytest.raises(KafkaError):
                await consumer.committed(TopicPartition(settings.events_topic, 0))
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def test_a_wait_for_records_ends_on_time_while_no_broker_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The sieve's loop (and its drain at shutdown) must not hang on the consumer during an outage.

    The consumer asks for the topics' partitions once it can; that question once waited
    10 s inside every `getmany` while no broker answered. Asked in every wait now, its
    failure is logged once every 10 s, not every time.
    """
    settings = Settings.from_env({}, broker="127.0.0.1:9", data_dir=str(tmp_path))
    consumer = RdkafkaConsumer(
        {**rdkafka_config(settings, "nobody", "nobody"), "socket.connection.setup.timeout.ms": 1000}
    )
    consumer.subscribe([settings.events_topic])

    async def scenario() -> list[float]:
        await consumer.start()
        try:
            took = []
            for _ in range(3):
                started = time.monotonic()
                assert await consumer.getmany(timeout_ms=300, max_records=5_000) == {}
                took.append(time.monotonic() - started)
            return took
        finally:
            await consumer.stop()

    took = asyncio.run(scenario())
    assert max(took) < 3, f"waits of 0.3 s took {took} s"
    assert sum("no topic metadata yet" in record.getMessage() for record in caplog.records) == 1


def test_its_assignment_follows_the_group_as_members_come_and_go(broker: EmbeddedBroker, tmp_path: Path):
    """`assignment()` answers from memory: it must still change with every rebalance."""
    settings = isolated_settings(broker, tmp_path)
    asyncio.run(ensure_topics(settings))
    everything = [TopicPartition(settings.events_topic, number) for number in range(settings.partitions)]

    async def settle(*consumers: RdkafkaConsumer) -> None:
        """Poll every consumer until their assignments split the topic: each some, none twice."""
        deadline = time.monotonic() + 60
        while True:
            assignments = [consumer.assignment() for consumer in consumers]
            if all(assignments) and sorted(chain(*assignments)) == sorted(everything):
                return
            assert time.monotonic() < deadline, f"assignments {assignments} never settled"
            await asyncio.gather(
                *(consumer.getmany(timeout_ms=200, max_records=100) for consumer in consumers)
            )

    async def scenario() -> None:
        group = f"{settings.app_id}-{uuid.uuid4().hex[:6]}"
        first = RdkafkaConsumer(rdkafka_config(settings, group, "first"))
        second = RdkafkaConsumer(rdkafka_config(settings, group, "second"))
        for consumer in (first, second):
            consumer.subscribe([settings.events_topic])
        assert first.assignment() == frozenset()
        await first.start()
        try:
            await settle(first)  # alone, it has every partition
            await second.start()
            try:
                await settle(first, second)
            finally:
                await second.stop()
            await settle(first)  # the leaver's partitions come back
        finally:
            await first.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("client", ["aiokafka", "librdkafka"])
def test_a_sieve_left_without_partitions_has_still_joined_its_group(
    broker: EmbeddedBroker, tmp_path: Path, client: str
) -> None:
    """Readiness waits for the join (`Ingest.polling`): a worker beside more workers than
    input partitions gets none, and must still become ready."""
    from streams.bench import create_topic
    from streams.ingest import Takeovers, _consumer
    from streams.metrics import Metrics

    settings = replace(isolated_settings(broker, tmp_path), sieve_client=client)
    topic = f"{settings.app_id}-one-partition"

    async def scenario() -> None:
        await create_topic(settings.bootstrap_servers(), topic, 1)
        consumers = [_consumer(settings, Metrics.create()) for _ in range(2)]
        listeners = [Takeovers() for _ in consumers]
        for consumer, listener in zip(consumers, listeners, strict=True):
            consumer.subscribe([topic], listener=listener)
            await consumer.start()
        try:
            deadline = time.monotonic() + 60
            while not (all(listener.joined for listener in listeners) and _split(consumers)):
                assert time.monotonic() < deadline, [listener.joined for listener in listeners]
                await asyncio.gather(
                    *(consumer.getmany(timeout_ms=200, max_records=10) for consumer in consumers)
                )
        finally:
            for consumer in consumers:
                await consumer.stop()

    asyncio.run(scenario())


def _split(consumers: list[Any]) -> bool:
    """One consumer has the only partition, the other none."""
    return sorted(len(consumer.assignment()) for consumer in consumers) == [0, 1]
