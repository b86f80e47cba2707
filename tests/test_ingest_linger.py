"""The sieve lets `seen` signals (and so its ticks and commits) wait while a backlog comes in.

Fakes stand in for aiokafka at the seam (tests/ingest_fakes.py); the sieve,
the merge and the clock are the real ones. The end-to-end and interleaving
tests show the alerts are those of replay; these pin down when things go.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.structs import TopicPartition

from streams import codec, documents, ingest
from streams.ingest import Ingest
from streams.metrics import Metrics
from streams.settings import Settings
from streams.signals import SignalKind
from streams.timeutil import to_rfc3339
from tests.builders import DEVICE, HOST, T0, minutes
from tests.ingest_fakes import Consumer, Message, Producer, noise, seen_devices

SETTINGS = Settings()
EVENTS = TopicPartition(SETTINGS.events_topic, 0)
OTHER = documents.Host(host_id="pc-other", name="PC-OTHER", arch="x86_64", build="26100.3775")


def sieve(end: int) -> tuple[Ingest, Consumer, Producer]:
    """A sieve owning one events partition of `end` records."""
    sieve_ = Ingest(SETTINGS, Metrics.create())
    consumer, producer = Consumer({EVENTS}, {EVENTS: end}), Producer()
    sieve_._consumer, sieve_._producer = consumer, producer
    return sieve_, consumer, producer


def kinds(producer: Producer) -> list[SignalKind]:
    return [signal.kind for signal in producer.signals(SETTINGS.signals_topic)]


@pytest.fixture
def long_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "SEEN_LINGER_SECONDS", 3600.0)


@pytest.mark.usefixtures("long_linger")
def test_seen_waits_while_batches_come_then_goes_before_the_tick_and_the_commit():
    sieve_, consumer, producer = sieve(end=2)

    async def scenario() -> None:
        await sieve_._sift_batch({EVENTS: [noise(T0, 0)]})
        await sieve_._sift_batch({EVENTS: [noise(T0 + minutes(11), 1, host=OTHER)]})
        assert kinds(producer) == []  # neither the `seen` nor the tick past them
        assert consumer.commits == []  # nor what they were read from
        await sieve_._sift_batch({})  # an empty poll: the backlog is read

    asyncio.run(scenario())
    assert sorted(seen_devices(producer, SETTINGS.signals_topic)) == sorted([DEVICE, OTHER.host_id])
    sent = kinds(producer)
    assert SignalKind.TICK in sent
    assert max(i for i, kind in enumerate(sent) if kind is SignalKind.SEEN_MANY) < sent.index(SignalKind.TICK)
    assert consumer.commits == [{EVENTS: 2}]


@pytest.mark.usefixtures("long_linger")
def test_an_alerting_signal_goes_at_once_but_its_record_is_committed_with_the_seen():
    sieve_, consumer, producer = sieve(end=2)
    crash = Message(1, codec.dumps(documents.kernel_power_41(HOST, T0 + minutes(1), 1)))

    async def scenario() -> None:
        await sieve_._sift_batch({EVENTS: [noise(T0, 0), crash]})
        assert kinds(producer) == [SignalKind.DIRTY_BOOT]
        assert consumer.commits == []
        await sieve_._sift_batch({})

    asyncio.run(scenario())
    assert kinds(producer)[1] is SignalKind.SEEN_MANY
    assert consumer.commits == [{EVENTS: 2}]


def test_seen_waits_no_longer_than_the_linger(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ingest, "SEEN_LINGER_SECONDS", 0.05)
    sieve_, consumer, producer = sieve(end=3)

    async def scenario() -> None:
        await sieve_._sift_batch({EVENTS: [noise(T0, 0)]})
        await asyncio.sleep(0.06)
        await sieve_._sift_batch({EVENTS: [noise(T0 + minutes(1), 1, host=OTHER)]})  # more is coming

    asyncio.run(scenario())
    assert sorted(seen_devices(producer, SETTINGS.signals_topic)) == sorted([DEVICE, OTHER.host_id])
    assert consumer.commits == [{EVENTS: 2}]


@pytest.mark.usefixtures("long_linger")
def test_a_stopping_sieve_sends_what_waits_and_commits():
    sieve_, consumer, producer = sieve(end=3)

    async def scenario() -> None:
        await sieve_._sift_batch({EVENTS: [noise(T0, 0)]})
        sieve_.stop()
        await sieve_._sift_batch({EVENTS: [noise(T0 + minutes(11), 1)]})

    asyncio.run(scenario())
    assert seen_devices(producer, SETTINGS.signals_topic) == [DEVICE, DEVICE]
    assert consumer.commits == [{EVENTS: 2}]


@pytest.mark.usefixtures("long_linger")
def test_after_a_broker_error_what_waited_is_sent_from_the_records_read_again():
    sieve_, consumer, producer = sieve(end=1)
    record = noise(T0, 0)

    async def scenario() -> None:
        await sieve_._sift_batch({EVENTS: [record]})
        await sieve_._rewind()  # what the loop does after a KafkaError
        assert consumer.positions == {EVENTS: 0}  # nothing was committed: read from the start
        await sieve_._sift_batch({})
        assert seen_devices(producer, SETTINGS.signals_topic) == []  # it did not outlive the rewind
        await sieve_._sift_batch({EVENTS: [record]})
        await sieve_._sift_batch({})

    asyncio.run(scenario())
    assert seen_devices(producer, SETTINGS.signals_topic) == [DEVICE]
    assert consumer.commits == [{EVENTS: 1}]


@pytest.mark.usefixtures("long_linger")
def test_acknowledgements_are_awaited_once_before_the_commit_not_batch_by_batch():
    sieve_, consumer, producer = sieve(end=2)
    producer.acks_at_once = False
    crash = Message(1, codec.dumps(documents.kernel_power_41(HOST, T0 + minutes(1), 1)))

    async def scenario() -> None:
        # Lingering, the batch returns with its alerting signal still unacknowledged.
        await asyncio.wait_for(sieve_._sift_batch({EVENTS: [noise(T0, 0), crash]}), timeout=5)
        flushing = asyncio.create_task(sieve_._sift_batch({}))
        await asyncio.sleep(0.05)
        assert [kind for kind in kinds(producer) if kind is not SignalKind.TICK] == [
            SignalKind.DIRTY_BOOT,
            SignalKind.SEEN_MANY,
        ]
        assert consumer.commits == []  # the commit waits for every acknowledgement
        producer.acknowledge()
        await asyncio.wait_for(flushing, timeout=5)

    asyncio.run(scenario())
    assert consumer.commits == [{EVENTS: 2}]


INSTALLS = TopicPartition(SETTINGS.installs_topic, 0)


def install_report(offset: int, at_ms: int) -> Message:
    """A native install report, as an update-report pipeline sends it."""
    report = {"device": DEVICE, "kb": "KB5055523", "installed_at": to_rfc3339(at_ms), "source": "intune"}
    return Message(offset, codec.dumps(report))


@pytest.fixture
def no_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "SEEN_LINGER_SECONDS", 0.0)


@pytest.mark.usefixtures("no_linger")
@pytest.mark.parametrize("wait_seconds", [60.0, 0.0])
def test_the_tick_waits_for_install_reports_known_to_be_unread(monkeypatch, wait_seconds):
    """A device agent told of an install after the clock moved on may have forgotten the device."""
    monkeypatch.setattr(ingest, "INSTALLS_WAIT_SECONDS", wait_seconds)
    sieve_ = Ingest(SETTINGS, Metrics.create())
    consumer, producer = Consumer({EVENTS, INSTALLS}, {EVENTS: 3, INSTALLS: 2}), Producer()
    sieve_._consumer, sieve_._producer = consumer, producer

    async def scenario() -> None:
        await sieve_._sift_batch({INSTALLS: [install_report(0, T0)], EVENTS: [noise(T0, 0)]})
        await sieve_._sift_batch({EVENTS: [noise(T0 + minutes(30), 1, host=OTHER)]})
        # The second report (offset 1) is known to be there and not read yet.
        assert (SignalKind.TICK in kinds(producer)) is (wait_seconds == 0.0)  # unless it waited enough
        await sieve_._sift_batch({INSTALLS: [install_report(1, T0 + minutes(1))]})
        await sieve_._sift_batch({EVENTS: [noise(T0 + minutes(45), 2, host=OTHER)]})

    asyncio.run(scenario())
    sent = kinds(producer)
    assert SignalKind.TICK in sent
    assert sent.index(SignalKind.INSTALL) < sent.index(SignalKind.TICK) or wait_seconds == 0.0
