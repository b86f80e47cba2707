"""The sieve's consumer loop: raw topics in, signals, ticks and dead letters out.

A bare consumer (aiokafka's, or librdkafka's through `streams.rdkafka`, as
`KBWATCH_SIEVE_CLIENT` says), not a Faust agent: it sees every record of the
fleet, and Faust's per-event machinery costs ten times what the sieve itself
does (domain.md §7). It reads batches, sifts each message, releases them in
event-time order across partitions (`streams.align`), produces the few
signals keyed by device, announces the fleet clock, and commits a batch only
after everything it produced from it is acknowledged (at-least-once).

The `seen` signals (most of what it sends) and the clock's ticks may wait up
to `SEEN_LINGER_SECONDS` for the next batches' while a backlog is being read:
fewer, fuller `seen_many` messages and fewer ticks cost the broker and the
device agents less (docs/performance-history.md, 0.8.10). Alerting signals
never wait, and nothing is committed while a `seen` of it waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence, Set
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from streams import dlq
from streams.align import NEVER_READ, Timed, merge
from streams.clock import MAX_CLOCK_SKEW_MS, FleetClock
from streams.metrics import Metrics
from streams.outcomes import Rejected
from streams.security import aiokafka_options
from streams.settings import Settings
from streams.sieve import ONLY_WINLOGBEAT_NOISE, Sieve, SieveResult, Sifted, Source
from streams.signals import SeenBatch, Signal, SignalKind
from streams.timeutil import wall_clock_ms
from streams.watermarks import Coverage

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 5_000
MAX_HELD_RECORDS = 20_000  # per partition, before it is paused
INSTALLS_WAIT_SECONDS = 5.0  # the longest a tick waits for install reports known unread
POLL_MS = 500
QUIET_FLUSH_MS = 2_000
RETRY_FIRST_SECONDS = 1.0  # after a broker error; doubles up to RETRY_MAX_SECONDS
RETRY_MAX_SECONDS = 30.0
# How long `seen` signals (and so the ticks after them) may wait for more while
# batches keep coming; an empty poll or a stop sends them at once. 1 s measured
# no faster than 0.3 s.
SEEN_LINGER_SECONDS = 0.3

Sifting = Timed[tuple[Any, Sequence[SieveResult]]]


class SieveConsumer(Protocol):
    """What the sieve asks of its consumer: `AIOKafkaConsumer`'s calls, which `RdkafkaConsumer` answers too.

    Partitions are aiokafka's `TopicPartition`; a message has `offset`, `value` and `key`;
    a failure the sieve should retry is aiokafka's `KafkaError`. The listener given to
    `subscribe` hears of every assignment, an empty one included (`Takeovers`).
    """

    def subscribe(self, topics: list[str], listener: Any = None) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]: ...
    def assignment(self) -> Set[Any]: ...
    def highwater(self, partition: Any) -> int | None: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def pause(self, *partitions: Any) -> None: ...
    def resume(self, *partitions: Any) -> None: ...
    async def commit(self, offsets: dict[Any, int]) -> None: ...
    async def committed(self, partition: Any) -> int | None: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    async def seek_to_beginning(self, partition: Any) -> None: ...


class Ingest:
    """Runs the sieve over the raw topics until stopped."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.sieve = Sieve(settings.max_message_bytes, decoding=settings.decoding())
        self.clock = FleetClock(settings.catalog().silence.allowed_lateness_ms)
        self._stopping = asyncio.Event()
        self._consumer: SieveConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._newest_event_ms = 0
        # Per input partition: the newest event time released, and the offset
        # after the last message read (held, released or noise alike).
        self._partition_time: dict[Any, int] = {}
        self._read_to: dict[Any, int] = {}
        # Records sifted but held back until the other partitions catch up. The
        # Winlogbeat noise is never held: it yields nothing and carries no time.
        self._held: dict[Any, list[Sifting]] = {}
        # The input partitions last announced idle (nothing to read), until records come.
        self._idle_announced: frozenset[Any] | None = None
        # Released `seen` signals not yet sent, and when the first of them was released.
        self._seen = SeenBatch(settings.partitions)
        self._seen_since = 0.0
        self._installs_unread_since: float | None = None  # since when ticks wait for install reports
        # Sends not yet acknowledged: awaited once, before the commit they guard.
        self._unacked: list[asyncio.Future[Any]] = []
        self.polling = False  # joined its group and reading: what readiness needs of the sieve
        self._takeovers = Takeovers()
        self.finished = asyncio.Event()  # run() returned: its last batch sent and committed

    async def run(self) -> None:
        """Consume, sift and produce until `stop()` is called."""
        settings = self.settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers(),
            client_id=f"{settings.app_id}-sieve",
            linger_ms=5,
            acks="all",
            **aiokafka_options(settings),
        )
        self._consumer = _consumer(settings, self.metrics)
        self._consumer.subscribe([settings.events_topic, settings.installs_topic], listener=self._takeovers)
        await self._producer.start()
        await self._consumer.start()
        log.info("sieve reading %s and %s", settings.events_topic, settings.installs_topic)
        try:
            quiet_polls = 0
            backoff = RETRY_FIRST_SECONDS
            rewind = False
            while not self._stopping.is_set():
                try:
                    if rewind:
                        await self._rewind()
                        rewind = False
                    batch = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_BATCH_RECORDS)
                    # A poll can come back empty before the group has been joined
                    # (librdkafka's does): only an assignment, even of nothing, says it has.
                    self.polling = self._takeovers.joined
                    quiet_polls = 0 if batch else quiet_polls + 1
                    # Held records wait for slower partitions; once the input has been
                    # quiet for a while, only partitions with records known unread do.
                    # (A single empty poll is not enough: mid-backlog, a fetch can
                    # simply come back empty, and releasing then reorders devices.)
                    quiet = quiet_polls * POLL_MS >= QUIET_FLUSH_MS
                    await self._sift_batch(batch, flush=quiet)
                    if batch:
                        self._idle_announced = None
                    elif quiet and not self._held and not self._seen:
                        await self._announce_idle()
                    backoff = RETRY_FIRST_SECONDS
                except KafkaError as error:
                    # The broker blinked: never exit, read again from the last commit.
                    self.metrics.broker_errors.labels("sieve").inc()
                    log.warning("sieve: broker error (%s); retrying in %.0f s", error, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_MAX_SECONDS)
                    rewind = True  # until it succeeds: records read but not sent must be read again
            if self._seen and not rewind:
                await self._send_waiting_seen()
        finally:
            self.polling = False
            try:
                await self._consumer.stop()
                await self._producer.stop()
            finally:
                self.finished.set()

    async def _rewind(self) -> None:
        """Forget what is held and read again from the committed offsets (at least once)."""
        assert self._consumer is not None
        self._held.clear()
        self._read_to.clear()
        self._seen.clear()  # their records are read again: uncommitted while they waited
        self._unacked.clear()  # likewise; a failed one is what brought the sieve here
        # What was sent from the records read again may never have arrived.
        self.sieve.forget_seen()
        for partition in self._consumer.assignment():
            committed = await self._consumer.committed(partition)  # KafkaError: tried again
            if committed is None:
                await self._consumer.seek_to_beginning(partition)
            else:
                self._consumer.seek(partition, committed)

    async def drain(self, grace_seconds: float) -> bool:
        """Stop after the batch in hand (sent and committed); False if that took too long."""
        self.stop()
        if self._consumer is None:
            return True
        try:
            await asyncio.wait_for(self.finished.wait(), grace_seconds)
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        """Ask the loop to finish its batch and return."""
        self._stopping.set()

    async def _sift_batch(self, batch: dict[Any, list[Any]], flush: bool = False) -> None:
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        for source in Source:
            topic = self.settings.installs_topic if source is Source.INSTALLS else self.settings.events_topic
            self.metrics.partitions.labels(source.value).set(sum(1 for tp in assigned if tp.topic == topic))
        for partition in [tp for tp in self._read_to if tp not in assigned]:
            # Revoked: its new owner reads it again from the commit, and what this
            # sieve read of it must not be committed if it comes back.
            if self._held.pop(partition, None):
                # A held `seen` was never sent, yet its bucket counts as sent: if the
                # partition comes back here, that record must not be judged a repeat.
                self.sieve.forget_seen()
            del self._read_to[partition]
        released: list[tuple[Any, Sifting]] = []
        noise: Counter[tuple[Source, Sifted]] = Counter()
        sift, timed = self.sieve.sift, self._timed
        for partition, messages in batch.items():
            if not messages:
                continue
            source = self._source(partition)
            records: list[Sifting] = []
            for message in messages:
                results = sift(source, message.value)
                # Most records are Winlogbeat noise: nothing to send, hold or order,
                # only counted, by what is left once the others are kept.
                if results is not ONLY_WINLOGBEAT_NOISE:
                    records.append(timed(message, results))
            if len(records) < len(messages):
                noise[source, Sifted.IRRELEVANT] += len(messages) - len(records)
            self._read_to[partition] = messages[-1].offset + 1
            if source is Source.INSTALLS:
                # Install reports are few and often late: they are not aligned.
                released += [(partition, record) for record in records]
            elif records:
                self._held.setdefault(partition, []).extend(records)
        if noise:
            self._count(noise)
        behind = self._behind(known_unread_only=flush)
        merged = merge(self._held, behind, self.clock.allowed_lateness_ms)
        released += merged.released
        self._held = merged.still_held(self._held)
        # A partition far ahead keeps its records here; stop fetching more of it.
        full = [tp for tp, records in self._held.items() if len(records) >= MAX_HELD_RECORDS]
        self._consumer.pause(*full)
        self._consumer.resume(*[tp for tp in assigned if tp not in full])
        if released:
            await self._send(released)
        flushing = bool(released or self._seen) and not self._lingering(more_coming=bool(batch) and not flush)
        if flushing:
            await self._send_seen_and_tick()
        if (released or noise or flushing) and not self._seen:
            await self._commit()

    def _lingering(self, more_coming: bool) -> bool:
        """Whether the waiting `seen` signals may wait for the next batch's."""
        if not self._seen or not more_coming or self._stopping.is_set():
            return False
        return time.monotonic() - self._seen_since < SEEN_LINGER_SECONDS

    async def _send_waiting_seen(self) -> None:
        """On the way out: what waits is sent and committed, or read again by the next owner."""
        try:
            await self._send_seen_and_tick()
            await self._commit()
        except KafkaError as error:
            log.warning("sieve: could not send its last seen signals (%s); they will be read again", error)

    async def _commit(self) -> None:
        """Commit what was released, once everything sent from it is acknowledged.

        A held partition is committed only up to its first held record.
        """
        assert self._consumer is not None
        if self._unacked:
            await asyncio.gather(*self._unacked)
            self._unacked.clear()
        offsets = {}
        for partition in self._consumer.assignment():
            held = self._held.get(partition)
            offset = held[0].offset if held else self._read_to.get(partition)
            if offset is not None:
                offsets[partition] = offset
        if offsets:
            await self._consumer.commit(offsets)

    async def _send(self, released: list[tuple[Any, Sifting]]) -> None:
        assert self._producer is not None
        settings = self.settings
        pending = self._unacked
        outcomes: Counter[tuple[Source, Sifted]] = Counter()
        reasons: Counter[str] = Counter()
        newest_ms = 0
        now_ms = wall_clock_ms()
        seen = self._seen
        if not seen:
            self._seen_since = time.monotonic()
        observe = self.clock.observe
        clock_limit_ms = now_ms + MAX_CLOCK_SKEW_MS
        # Each input partition's source, looked up once a batch instead of once a record.
        sources: dict[Any, Source] = {}
        partition_time = self._partition_time
        for partition, record in released:
            message, results = record.item
            source = sources.get(partition)
            if source is None:
                source = sources[partition] = self._source(partition)
            any_rejected = False
            for result in results:
                sifted, signal, event_ms = result.sifted, result.signal, result.event_ms
                if not event_ms and signal is None and result.rejected is None:
                    outcomes[source, sifted] += 1  # noise of other formats
                    continue
                if signal is not None and signal.kind is SignalKind.SEEN and not seen.add(signal):
                    sifted = Sifted.IRRELEVANT  # the same bucket again, from another input partition
                outcomes[source, sifted] += 1
                if event_ms > newest_ms:
                    newest_ms = event_ms
                if source is Source.WINLOGBEAT and event_ms <= clock_limit_ms:
                    # Install reports arrive late or in bulk (WUfB exports), and a
                    # device clock far ahead is wrong: neither moves the fleet clock.
                    if signal is not None:
                        observe(event_ms, signal.device)
                    # max(): a partition's first record sets its time even without one (0).
                    if event_ms > partition_time.get(partition, -1):
                        partition_time[partition] = event_ms
                if signal is not None and signal.kind is not SignalKind.SEEN:
                    value, key = signal.to_wire(), signal.device.encode()
                    pending.append(await self._producer.send(settings.signals_topic, value=value, key=key))
                elif result.rejected is not None:
                    reasons[result.rejected.reason.value] += 1
                    any_rejected = True
            if any_rejected:
                rejected = [result.rejected for result in results if result.rejected is not None]
                # One dead letter per message, however many of its records were refused.
                first = rejected[0]
                if len(results) > 1:
                    first = Rejected(
                        first.reason, f"{len(rejected)} of {len(results)} records: {first.detail}"
                    )
                headers = dlq.kafka_headers(first, partition.topic, partition.partition, message.offset)
                pending.append(
                    await self._producer.send(
                        settings.dlq_topic, value=message.value, key=message.key, headers=headers
                    )
                )
        self._count(outcomes, reasons, newest_ms)

    async def _send_seen_and_tick(self) -> None:
        """The waiting `seen` signals, then the fleet clock's tick if it is due (`_commit` awaits them).

        A `seen` only moves a device's newest time, which does not depend on the
        order, so it may follow the device's later signals; but it must precede
        any tick past it, or the device could be judged silent.
        """
        assert self._producer is not None
        pending = self._unacked
        for partition_number, message in self._seen.messages():
            pending.append(
                await self._producer.send(
                    self.settings.signals_topic, value=message.to_wire(), partition=partition_number
                )
            )
        watermark = 0 if self._waiting_for_installs() else self.clock.due_tick()
        if watermark:
            # To every partition: each device agent judges the silences of its own
            # partition's devices.
            pending += await self._send_tick(watermark, idle=False)
        self._seen.clear()

    def _waiting_for_installs(self) -> bool:
        """Whether the tick waits for install reports this sieve knows are unread.

        A device agent that learns of an install after the fleet clock moved on
        can have taken the device's loop for background, or forgotten the device.
        Install reports are few and read at once, so the wait is short; it ends
        after `INSTALLS_WAIT_SECONDS` all the same, for an end offset no record
        reaches (a transaction marker).
        """
        assert self._consumer is not None
        installs = self.settings.installs_topic
        if not any(self._unread(tp) for tp in self._consumer.assignment() if tp.topic == installs):
            self._installs_unread_since = None
            return False
        now = time.monotonic()
        if self._installs_unread_since is None:
            self._installs_unread_since = now
        return now - self._installs_unread_since < INSTALLS_WAIT_SECONDS

    async def _send_tick(self, watermark_ms: int, idle: bool) -> list[asyncio.Future[Any]]:
        """The sieve's clock, for the input partitions it owns, to every signals partition."""
        assert self._consumer is not None and self._producer is not None
        settings = self.settings
        owned = tuple(
            sorted(tp.partition for tp in self._consumer.assignment() if tp.topic == settings.events_topic)
        )
        total = len(self._consumer.partitions_for_topic(settings.events_topic) or ())
        if not owned or not total:
            return []  # no input of its own: this sieve has nothing to say about time
        tick = Signal(
            device="", kind=SignalKind.TICK, time_ms=watermark_ms, coverage=Coverage(owned, total, idle)
        ).to_wire()
        return [
            await self._producer.send(settings.signals_topic, value=tick, partition=partition_number)
            for partition_number in range(settings.partitions)
        ]

    async def _announce_idle(self) -> None:
        """Say once that this sieve's partitions are read to their end and quiet.

        Otherwise a worker whose partitions get no records would hold every
        other worker's clock back (`streams.watermarks`).
        """
        assert self._consumer is not None
        assigned = frozenset(self._consumer.assignment())
        if assigned == self._idle_announced:
            return
        pending = await self._send_tick(self.clock.watermark_ms, idle=True)
        if pending:
            await asyncio.gather(*pending)
        self._idle_announced = assigned

    @staticmethod
    def _timed(message: Any, results: Sequence[SieveResult]) -> Sifting:
        # Nearly every message holds one record: spare it the generator.
        event_ms = results[0].event_ms if len(results) == 1 else max(result.event_ms for result in results)
        return Timed(message.offset, event_ms, (message, results))

    def _source(self, partition: Any) -> Source:
        return Source.INSTALLS if partition.topic == self.settings.installs_topic else Source.WINLOGBEAT

    def _behind(self, known_unread_only: bool = False) -> dict[Any, int]:
        """Input partitions that may still hold earlier records: unread ones past what is held.

        After a quiet spell, only partitions known to have unread records hold
        the others back: one never read, or whose end is unknown, has nothing
        on its way, but a fetch that merely lagged must not let records pass it.
        """
        assert self._consumer is not None
        behind = {}
        for partition in self._consumer.assignment():
            if partition.topic != self.settings.events_topic:
                continue
            unread = self._unread(partition)
            if unread or (unread is None and not known_unread_only):
                behind[partition] = self._partition_time.get(partition, NEVER_READ)
        return behind

    def _unread(self, partition: Any) -> bool | None:
        """Whether the partition holds records past what was read; None when either end is unknown."""
        assert self._consumer is not None
        next_offset, highwater = self._read_to.get(partition), self._consumer.highwater(partition)
        if next_offset is None or highwater is None:
            return None
        return next_offset < highwater

    def _count(
        self,
        outcomes: Counter[tuple[Source, Sifted]],
        reasons: Counter[str] | None = None,
        newest_ms: int = 0,
    ) -> None:
        # Counted per batch, not per record: a labelled inc costs as much as sifting.
        for (source, outcome), count in outcomes.items():
            self.metrics.records.labels(source.value, outcome.value).inc(count)
        for reason, count in (reasons or {}).items():
            self.metrics.dlq.labels(reason).inc(count)
        self._newest_event_ms = max(self._newest_event_ms, newest_ms)
        if self._newest_event_ms:
            self.metrics.newest_event_time.set(self._newest_event_ms / 1000)
            self.metrics.event_time_lag.set((wall_clock_ms() - self._newest_event_ms) / 1000)


def _consumer(settings: Settings, metrics: Metrics) -> SieveConsumer:
    """The sieve's consumer on the client `settings.sieve_client` names."""
    group_id, client_id = f"{settings.app_id}-sieve", f"{settings.app_id}-sieve"
    if settings.sieve_client == "librdkafka":
        from streams.rdkafka import RdkafkaConsumer, rdkafka_config

        # librdkafka retries a broker error itself and only reports it: counted as aiokafka's are.
        return RdkafkaConsumer(
            rdkafka_config(settings, group_id, client_id), metrics.broker_errors.labels("sieve").inc
        )
    consumer: SieveConsumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers(),
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_BATCH_RECORDS,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.session_timeout_seconds * 1000),
        heartbeat_interval_ms=max(1000, int(settings.session_timeout_seconds * 1000) // 3),
        rebalance_timeout_ms=int(settings.rebalance_timeout_seconds * 1000),
        **aiokafka_options(settings),
    )
    return consumer


class Takeovers(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs which input partitions this sieve gives up and takes over (how a takeover shows),
    and notes that it has joined its group.

    aiokafka awaits the `on_partitions_*` hooks; `RdkafkaConsumer` calls `assigned` and
    `revoked` on librdkafka's thread, so they only log and set a flag.
    """

    def __init__(self) -> None:
        self.joined = False  # an assignment came, perhaps of no partition

    def assigned(self, partitions: Any) -> None:
        log.info("sieve: partitions assigned: %s", describe_partitions(partitions) or "none")
        self.joined = True

    def revoked(self, partitions: Any) -> None:
        if partitions:
            log.info("sieve: partitions revoked: %s", describe_partitions(partitions))

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned(assigned)


def describe_partitions(partitions: Any) -> str:
    """`topic [0, 2]; other [1]`: topic partitions, grouped, for a log line."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{topic} {sorted(numbers)}" for topic, numbers in sorted(by_topic.items()))
