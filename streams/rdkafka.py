"""The sieve's consumer on librdkafka (confluent-kafka), behind the calls `Ingest` makes.

aiokafka fetches and unpacks every record in Python, on the one thread the
worker has: 2.6 to 3.0 µs of CPU per record on this project's machine, a fifth
of what the worker spends on one. librdkafka fetches and unpacks in its own
threads, without the GIL, so that work moves to another core and the event loop
keeps only the making of each message (README, Performance).

`RdkafkaConsumer` answers the aiokafka calls the sieve uses (`getmany`,
`assignment`, `highwater`, `pause`, `commit`, `seek`...) with aiokafka's
`TopicPartition` and its `KafkaError`, so the sieve's loop, its rewind after a
broker error and its tests stay as they are. Every call that can wait on the
broker runs on one thread of its own, never on the event loop; the others
(`pause`, `seek`...) only touch the client's local state, and the sieve makes
them between two `getmany`, never during one. librdkafka runs the rebalance
callbacks inside `consume`, on that thread: they log, and after a rebalance the
assignment and the topics' partition counts are read again there, so that
`assignment()` answers from memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import confluent_kafka
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.ingest import Takeovers
from streams.security import sasl_password
from streams.settings import Settings

log = logging.getLogger(__name__)

# `consume` waits for a whole batch or its timeout, whichever first: asked in short
# waits, it hands over what has come within one of them, as `getmany` does at once.
_WAIT_SLICE_SECONDS = 0.02
_METADATA_TIMEOUT_SECONDS = 10.0
_METADATA_MIN_SECONDS = 0.5
_ERROR_LOG_SECONDS = 10.0
# How long librdkafka waits, once its fetch queue is full, before it looks for room
# again: a sliver of a batch's time (5,000 records take ~90 ms here), so a reader
# that keeps up is never starved, and long enough not to spin (bench: 1.95 s of its
# fetch thread's CPU at 0 ms, 0.21 s at 10 ms, over the same 200,000 records).
FETCH_QUEUE_BACKOFF_MS = 10
# librdkafka's own log lines (each failed connection, at ERROR): a logger of their own,
# so that an operator can quiet them without quieting the sieve.
_client_log = logging.getLogger("streams.rdkafka.librdkafka")


class Record:
    """What the sieve reads of a message: aiokafka's `ConsumerRecord` fields it uses."""

    __slots__ = ("key", "offset", "value")

    def __init__(self, offset: int, value: bytes | None, key: bytes | None) -> None:
        self.offset = offset
        self.value = value
        self.key = key


def rdkafka_config(settings: Settings, group_id: str, client_id: str) -> dict[str, Any]:
    """librdkafka's configuration for the sieve's consumer, security included."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers(),
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # aiokafka's assignor: a group of both clients (a rolling change) agrees on it.
        "partition.assignment.strategy": "roundrobin",
        "fetch.wait.max.ms": settings.fetch_max_wait_ms,
        # librdkafka 2 waits a second before fetching again once its queue is full,
        # which starves a reader that keeps up. Not 0: its fetch thread then spins
        # while the queue stays full, half a core of a reader that is behind.
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "session.timeout.ms": int(settings.session_timeout_seconds * 1000),
        "heartbeat.interval.ms": max(1000, int(settings.session_timeout_seconds * 1000) // 3),
        # aiokafka's default: the sieve's loop may wait on its sends between two batches.
        "max.poll.interval.ms": 300_000,
        "security.protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        # No CA file: the system's CAs, as for aiokafka (librdkafka looks in the usual places).
        config["ssl.ca.location"] = settings.ssl_cafile or "probe"
        if settings.ssl_certfile:
            config["ssl.certificate.location"] = settings.ssl_certfile
        if settings.ssl_keyfile:
            config["ssl.key.location"] = settings.ssl_keyfile
    if settings.security_protocol.startswith("SASL"):
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = sasl_password(settings)
    return config


class RdkafkaConsumer:
    """A confluent-kafka consumer with the part of `AIOKafkaConsumer`'s surface the sieve uses."""

    def __init__(self, config: dict[str, Any], on_broker_error: Callable[[], None] | None = None) -> None:
        self._config = config
        self._on_broker_error = on_broker_error
        self._warned_at: dict[str, float] = {}  # when each kind of repeated warning was last logged
        self._consumer: confluent_kafka.Consumer | None = None
        # One thread for every call that may wait: librdkafka's consumer is not to be
        # used from two threads at once, and the event loop must never wait on it.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sieve-rdkafka")
        self._partitions: dict[tuple[str, int], TopicPartition] = {}
        # Partitions per topic, learned on the consumer's thread (it may wait on the
        # broker) after each assignment: a topic can grow.
        self._topic_sizes: dict[str, int] = {}
        self._sizes_known = False
        self._topics: list[str] = []
        self._listener: Any = None  # hears of assignments (`ingest.Takeovers` unless given one)
        # The assignment as of the last rebalance, read again on the consumer's thread after
        # each one: librdkafka's `assignment()` asks its main thread and waits for the answer
        # holding the GIL (3 % of the worker's Python time in a py-spy profile), and the
        # sieve asks for it several times a batch.
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._assignment_known = True

    async def _call(self, function: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)
        except confluent_kafka.KafkaException as error:
            raise KafkaError(str(error)) from error

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        """Remember the topics; `start` subscribes. The listener's `assigned` and `revoked`
        (`ingest.Takeovers`) are called on the consumer's thread, with aiokafka's partitions."""
        self._topics = list(topics)
        self._listener = listener if listener is not None else Takeovers()

    async def start(self) -> None:
        self._consumer = await self._call(self._create)

    def _create(self) -> confluent_kafka.Consumer:
        consumer = confluent_kafka.Consumer(
            {**self._config, "error_cb": self._broker_error}, logger=_client_log
        )
        consumer.subscribe(
            self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        return consumer

    def _broker_error(self, error: Any) -> None:
        """librdkafka's client-wide errors (a broker down, a refused connection), which it retries
        itself: counted each time, logged once per error code every `_ERROR_LOG_SECONDS`."""
        if self._on_broker_error is not None:
            self._on_broker_error()
        # By code: the text names each broker and attempt.
        self._warn_now_and_then(
            f"broker {error.code()}", "sieve: broker error (%s); librdkafka retries it", error.str()
        )

    def _warn_now_and_then(self, kind: str, message: str, *args: Any) -> None:
        """Log a warning that repeats while a broker is away, once per `kind` every `_ERROR_LOG_SECONDS`."""
        now = time.monotonic()
        if now - self._warned_at.get(kind, -_ERROR_LOG_SECONDS) >= _ERROR_LOG_SECONDS:
            self._warned_at[kind] = now
            log.warning(message, *args)

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        self._sizes_known = False
        self._assignment_known = False
        self._listener.assigned([self._partition_of(tp.topic, tp.partition) for tp in partitions])

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        self._assignment_known = False
        self._listener.revoked([self._partition_of(tp.topic, tp.partition) for tp in partitions])

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        log.warning("sieve: partitions lost: %s", _describe(partitions))
        self._assignment_known = False

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._call(self._consumer.close)
        self._thread.shutdown(wait=False)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        """The messages that came within `timeout_ms`, by partition, in offset order."""
        messages = await self._call(self._consume, max_records, timeout_ms / 1000)
        batch: dict[TopicPartition, list[Record]] = {}
        partition_of = self._partition_of
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaError(str(error))
                log.warning("sieve: %s", error)
                continue
            partition = partition_of(message.topic(), message.partition())
            records = batch.get(partition)
            if records is None:
                records = batch[partition] = []
            records.append(Record(message.offset(), message.value(), message.key()))
        return batch

    def _consume(self, max_records: int, timeout: float) -> list[Any]:
        assert self._consumer is not None
        deadline = time.monotonic() + timeout
        while True:
            messages: list[Any] = self._consumer.consume(max_records, _WAIT_SLICE_SECONDS)
            if not self._assignment_known:
                # The rebalance callbacks ran inside `consume`, and the client applied
                # their assignment when they returned: read it once, here.
                self._assignment_known = True
                self._assignment = frozenset(
                    self._partition_of(tp.topic, tp.partition) for tp in self._consumer.assignment()
                )
            if not self._sizes_known:
                # Within what is left of the wait (but long enough for a broker that
                # answers): with the brokers down, a metadata wait of 10 s held each of
                # the sieve's half-second waits, and its drain at shutdown, that long.
                left = deadline - time.monotonic()
                self._learn_topic_sizes(min(_METADATA_TIMEOUT_SECONDS, max(_METADATA_MIN_SECONDS, left)))
            if messages or time.monotonic() >= deadline:
                return messages

    def _learn_topic_sizes(self, timeout: float) -> None:
        """Learn the partitions of each topic; left unknown, and asked again, if the broker cannot say."""
        assert self._consumer is not None
        try:
            metadata = self._consumer.list_topics(timeout=timeout)
        except confluent_kafka.KafkaException as error:
            # Asked again in every wait for records.
            self._warn_now_and_then("metadata", "sieve: no topic metadata yet (%s)", error)
            return
        for topic in self._topics:
            found = metadata.topics.get(topic)
            if found is not None and found.error is None:
                self._topic_sizes[topic] = len(found.partitions)
        self._sizes_known = True

    def _partition_of(self, topic: str, number: int) -> TopicPartition:
        partition = self._partitions.get((topic, number))
        if partition is None:
            partition = self._partitions[topic, number] = TopicPartition(topic, number)
        return partition

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions assigned as of the last `getmany` (a rebalance happens inside one)."""
        return self._assignment

    def highwater(self, partition: TopicPartition) -> int | None:
        """The end of `partition` as of its last fetch (None before one)."""
        assert self._consumer is not None
        try:
            _, high = self._consumer.get_watermark_offsets(_rd(partition), cached=True)
        except confluent_kafka.KafkaException:
            return None
        return high if high >= 0 else None

    def partitions_for_topic(self, topic: str) -> set[int]:
        """The topic's partitions as of the last assignment (empty until learned)."""
        return set(range(self._topic_sizes.get(topic, 0)))

    def pause(self, *partitions: TopicPartition) -> None:
        if partitions:
            assert self._consumer is not None
            self._consumer.pause([_rd(partition) for partition in partitions])

    def resume(self, *partitions: TopicPartition) -> None:
        if partitions:
            assert self._consumer is not None
            self._consumer.resume([_rd(partition) for partition in partitions])

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        offsets_list = [_rd(partition, offset) for partition, offset in offsets.items()]
        await self._call(partial(self._consumer.commit, offsets=offsets_list, asynchronous=False))

    async def committed(self, partition: TopicPartition) -> int | None:
        assert self._consumer is not None
        found = await self._call(self._consumer.committed, [_rd(partition)], _METADATA_TIMEOUT_SECONDS)
        offset: int = found[0].offset
        return offset if offset >= 0 else None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        try:
            self._consumer.seek(_rd(partition, offset))
        except confluent_kafka.KafkaException as error:
            raise KafkaError(str(error)) from error

    async def seek_to_beginning(self, partition: TopicPartition) -> None:
        self.seek(partition, confluent_kafka.OFFSET_BEGINNING)


def _rd(partition: TopicPartition, offset: int | None = None) -> confluent_kafka.TopicPartition:
    if offset is None:
        return confluent_kafka.TopicPartition(partition.topic, partition.partition)
    return confluent_kafka.TopicPartition(partition.topic, partition.partition, offset)


def _describe(partitions: Iterable[Any]) -> str:
    from streams.ingest import describe_partitions

    return describe_partitions(partitions) or "none"
