"""The sieve: every message gets exactly one outcome, and noise costs little."""

from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from streams import codec, documents
from streams.outcomes import RejectReason
from streams.sieve import SEEN_GRANULARITY_MS, Sieve, Sifted, Source
from streams.signals import MAX_SEEN_PER_MESSAGE, SeenBatch, Signal, SignalKind, partition_of, seen_many
from tests.builders import HOST, T0

NOW = T0 + 10**9


def sieve() -> Sieve:
    return Sieve(max_message_bytes=64 * 1024, clock=lambda: NOW)


def test_a_crash_record_is_relevant():
    result = sieve().sift(Source.WINLOGBEAT, codec.dumps(documents.kernel_power_41(HOST, T0, 1)))[0]
    assert result.sifted is Sifted.RELEVANT
    assert result.signal is not None and result.signal.kind is SignalKind.DIRTY_BOOT
    assert result.event_ms == T0


def test_noise_passes_once_per_device_and_ten_minutes_floored():
    the_sieve = sieve()
    outcomes = []
    for second in range(0, 1800, 60):
        document = documents.security_4624(HOST, T0 + 7 * 60_000 + second * 1000, second, "alice")
        outcomes.append(the_sieve.sift(Source.WINLOGBEAT, codec.dumps(document))[0])
    passed = [result for result in outcomes if result.sifted is Sifted.SEEN]
    assert len(passed) == 4  # 14:07, 14:10, 14:20, 14:30 buckets
    assert all(result.signal is not None for result in passed)
    assert [r.signal.time_ms % SEEN_GRANULARITY_MS for r in passed if r.signal] == [0, 0, 0, 0]
    assert sum(result.sifted is Sifted.IRRELEVANT for result in outcomes) == len(outcomes) - 4


def test_bytes_that_are_not_json_are_rejected():
    result = sieve().sift(Source.WINLOGBEAT, b"\xff\xfe not json")[0]
    assert result.sifted is Sifted.REJECTED
    assert result.rejected is not None and result.rejected.reason is RejectReason.NOT_JSON


def test_nan_is_not_json():
    result = sieve().sift(Source.WINLOGBEAT, b'{"winlog": {"event_id": NaN}}')[0]
    assert result.rejected is not None and result.rejected.reason is RejectReason.NOT_JSON


def test_oversized_messages_are_rejected_before_parsing():
    result = sieve().sift(Source.WINLOGBEAT, b"[" + b"1," * 40_000 + b"1]")[0]
    assert result.rejected is not None and result.rejected.reason is RejectReason.TOO_LARGE


def test_a_tombstone_is_rejected():
    result = sieve().sift(Source.WINLOGBEAT, None)[0]
    assert result.rejected is not None and result.rejected.reason is RejectReason.NOT_JSON


def test_install_records_are_read_on_their_own_topic():
    record = {"device": HOST.host_id, "kb": "KB5055523", "installed_at": "2025-04-08T14:00:00Z"}
    result = sieve().sift(Source.INSTALLS, codec.dumps(record))[0]
    assert result.sifted is Sifted.RELEVANT
    assert result.signal is not None and result.signal.kb == "KB5055523"


def test_noise_with_an_absurd_time_is_rejected_not_trusted():
    document = documents.security_4624(HOST, T0, 1, "alice")
    document["@timestamp"] = "2999-01-01T00:00:00Z"
    result = sieve().sift(Source.WINLOGBEAT, codec.dumps(document))[0]
    assert result.rejected is not None and result.rejected.reason is RejectReason.BAD_TIMESTAMP


def test_the_noise_fast_path_always_agrees_with_the_full_path():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from streams.formats.detect import Decoding, InputFormat, decode_events

    base = documents.security_4624(HOST, T0, 9, "alice")
    values = st.one_of(
        st.none(),
        st.integers(-5, 70_000),
        st.text(max_size=8),
        st.sampled_from(["41", "4624", "12", "1001", "7002"]),
    )
    providers = st.sampled_from(
        [
            "Microsoft-Windows-Security-Auditing",
            "Microsoft-Windows-Kernel-Power",
            "User32",
            "Application Error",
            7,
        ]
    )

    warm = sieve()

    @settings(max_examples=400, deadline=None)
    @given(provider=providers, event_id=values, stamp=st.one_of(st.none(), st.just("2025-04-08T14:00:00Z")))
    def check(provider, event_id, stamp):
        document = codec.loads(codec.dumps(base))
        document["winlog"]["provider_name"] = provider
        document["winlog"]["event_id"] = event_id
        if stamp is None:
            document.pop("@timestamp")
        payload = codec.dumps(document)
        fast = sieve()._winlogbeat_noise(payload)
        # A sieve that has judged earlier examples (its memory of noise ids warm) agrees.
        remembered = warm._winlogbeat_noise(payload)
        assert (remembered is None) is (fast is None)
        if fast is None:
            return  # the full path decides: nothing to compare
        _, (outcome,) = decode_events(document, InputFormat.AUTO, Decoding(), NOW)
        full = sieve()._results(InputFormat.WINLOGBEAT, [outcome], NOW)[0]
        assert (fast.sifted, fast.signal, fast.rejected) == (full.sifted, full.signal, full.rejected)

    check()


def test_a_remembered_noise_id_does_not_pass_a_bool_or_a_float_that_equals_it():
    # `True == 1` and `1.0 == 1` hash alike: the memory of noise ids must not let
    # them through as the valid id they equal, which the full path would not.
    warm = sieve()
    document = documents.security_4624(HOST, T0, 9, "alice")
    document["winlog"]["provider_name"] = "Microsoft-Windows-Time-Service"
    for event_id, remembered in ((1, True), ("1", True), (True, False), (1.0, False), (1, True)):
        document["winlog"]["event_id"] = event_id
        payload = codec.dumps(document)
        assert (warm._winlogbeat_noise(payload) is not None) is remembered, event_id
        assert (warm.sift(Source.WINLOGBEAT, payload)[0].sifted is not Sifted.REJECTED) is remembered


def test_the_memory_of_noise_ids_is_bounded(monkeypatch):
    from streams import sieve as sieve_module

    monkeypatch.setattr(sieve_module, "_MAX_NOISE_PROVIDERS", 3)
    monkeypatch.setattr(sieve_module, "_MAX_NOISE_IDS_PER_PROVIDER", 2)
    warm = sieve()
    document = documents.security_4624(HOST, T0, 9, "alice")
    for provider in ("A", "B", "C", "D", "E"):
        for event_id in range(5):
            document["winlog"]["provider_name"], document["winlog"]["event_id"] = provider, event_id
            assert warm.sift(Source.WINLOGBEAT, codec.dumps(document))[0].sifted is not Sifted.REJECTED
    assert sorted(warm._noise_ids) == ["A", "B", "C"]
    assert all(ids == {0, 1} for ids in warm._noise_ids.values())


def test_a_noise_record_comes_back_as_the_one_shared_sequence():
    from streams.sieve import ONLY_WINLOGBEAT_NOISE

    warm = sieve()
    first, second = (
        warm.sift(Source.WINLOGBEAT, codec.dumps(documents.security_4624(HOST, T0 + n * 1000, n, "alice")))
        for n in (1, 2)
    )
    assert first is not ONLY_WINLOGBEAT_NOISE and first[0].sifted is Sifted.SEEN
    assert second is ONLY_WINLOGBEAT_NOISE


def _full_path(payload: bytes) -> tuple[Sifted, object, object]:
    """What the sieve says of a Winlogbeat message when it parses it whole."""
    from streams.formats.detect import Decoding, InputFormat, decode_events

    try:
        document = codec.loads(payload)
    except codec.DecodeError:
        return (Sifted.REJECTED, None, RejectReason.NOT_JSON)
    _, outcomes = decode_events(document, InputFormat.AUTO, Decoding(), NOW)
    (result,) = sieve()._results(InputFormat.WINLOGBEAT, outcomes, NOW)
    return (result.sifted, result.signal, result.rejected.reason if result.rejected else None)


def test_the_lazy_read_agrees_with_the_whole_parse_on_damaged_bytes():
    # Byte-level damage: what simdjson and orjson accept must not drift apart
    # where it would change a verdict (truncation, stray bytes, bad UTF-8, ...).
    import random

    rng = random.Random(20250408)
    alphabet = b'{}[]",:\\\x00\x7f\xff\xc3 019eE+-.tfn'
    bases = [
        codec.dumps(documents.security_4624(HOST, T0, 1, "alice")),
        codec.dumps(documents.service_control_7036(HOST, T0, 2, "BITS", "running")),
        codec.dumps(documents.kernel_power_41(HOST, T0, 3)),
    ]
    fast_judged = 0
    for _ in range(3_000):
        damaged = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(damaged))
            operation = rng.randrange(3)
            if operation == 0:
                damaged[at] = rng.choice(alphabet)
            elif operation == 1:
                del damaged[at]
            else:
                damaged.insert(at, rng.choice(alphabet))
        payload = bytes(damaged)
        fast = sieve()._winlogbeat_noise(payload)
        if fast is not None:
            fast_judged += 1
            fast_reason = fast.rejected.reason if fast.rejected else None
            assert (fast.sifted, fast.signal, fast_reason) == _full_path(payload), payload
        (result,) = sieve().sift(Source.WINLOGBEAT, payload)
        reason = result.rejected.reason if result.rejected else None
        assert (result.sifted, result.signal, reason) == _full_path(payload), payload
    assert fast_judged > 500  # damage that misses the fields read: the lazy path judged it


def test_the_lazy_read_declines_where_the_two_parsers_differ():
    base = codec.dumps(documents.security_4624(HOST, T0, 1, "alice"))
    with_bom = b"\xef\xbb\xbf" + base  # simdjson skips the mark, orjson refuses it
    big_number = base[:-1] + b',"extra":123456789012345678901234567890}'  # orjson: a float
    for payload in (with_bom, big_number):
        assert sieve()._winlogbeat_noise(payload) is None
        (result,) = sieve().sift(Source.WINLOGBEAT, payload)
        reason = result.rejected.reason if result.rejected else None
        assert (result.sifted, result.signal, reason) == _full_path(payload)
    (result,) = sieve().sift(Source.WINLOGBEAT, with_bom)
    assert result.rejected is not None and result.rejected.reason is RejectReason.NOT_JSON


def test_a_repeated_key_is_read_as_the_readme_says():
    # No collector writes one; the README's hostile-input list says what happens:
    # the lazy read sees the first `winlog`, the whole parse (orjson) the last.
    noise = documents.security_4624(HOST, T0, 1, "alice")
    crash = documents.kernel_power_41(HOST, T0, 2)

    def with_two_winlogs(first: dict[str, Any], second: dict[str, Any]) -> bytes:
        fields = [(key, value) for key, value in noise.items() if key != "winlog"]
        fields += [("winlog", first["winlog"]), ("winlog", second["winlog"])]
        return b"{" + b",".join(codec.dumps(key) + b":" + codec.dumps(value) for key, value in fields) + b"}"

    crash_last = with_two_winlogs(noise, crash)
    assert _full_path(crash_last)[0] is Sifted.RELEVANT  # what the whole parse alone would say
    (result,) = sieve().sift(Source.WINLOGBEAT, crash_last)
    assert result.sifted is Sifted.SEEN  # judged noise on the first `winlog`: never parsed whole
    crash_first = with_two_winlogs(crash, noise)
    (result,) = sieve().sift(Source.WINLOGBEAT, crash_first)
    assert result.sifted is Sifted.SEEN  # may matter on the first: parsed whole, the last (noise) wins


def test_noise_is_judged_without_a_whole_parse_record_after_record(monkeypatch):
    # The lazy read must release its parser after each record, or every later
    # record would silently take the slow path.
    warm = sieve()
    payloads = [
        codec.dumps(documents.security_4624(HOST, T0 + number * 60_000, number, "alice"))
        for number in range(50)
    ]

    def no_whole_parse(payload):
        raise AssertionError("noise was parsed whole")

    monkeypatch.setattr(codec, "loads", no_whole_parse)
    outcomes = [warm.sift(Source.WINLOGBEAT, payload)[0].sifted for payload in payloads]
    assert set(outcomes) == {Sifted.SEEN, Sifted.IRRELEVANT}


def test_other_collectors_are_spared_the_lazy_read_and_winlogbeat_gets_it_back():
    from zoneinfo import ZoneInfo

    from streams.collectors import nxlog_record

    peeks: list[bytes] = []

    class Spy(codec.Peeker):
        def peek(self, payload: bytes) -> Any:
            peeks.append(payload)
            return super().peek(payload)

    class Declining(codec.Peeker):
        def peek(self, payload: bytes) -> Any:
            return None  # every record parsed whole

    warm = sieve()
    warm._peeker = Spy()
    zone = ZoneInfo("Europe/Berlin")
    nxlog = [
        codec.dumps(nxlog_record(documents.security_4624(HOST, T0 + number * 60_000, number, "alice"), zone))
        for number in range(5)
    ]
    winlogbeat = codec.dumps(documents.security_4624(HOST, T0 + 3_600_000, 9, "alice"))
    verdicts = [warm.sift(Source.WINLOGBEAT, payload)[0] for payload in [winlogbeat, *nxlog, winlogbeat]]
    # The first NXLog record is read lazily once (the last record was Winlogbeat); the rest not.
    assert peeks == [winlogbeat, nxlog[0], winlogbeat]
    whole = sieve()
    whole._peeker = Declining()
    expected = [whole.sift(Source.WINLOGBEAT, payload)[0] for payload in [winlogbeat, *nxlog, winlogbeat]]
    assert [(v.sifted, v.signal, v.rejected) for v in verdicts] == [
        (v.sifted, v.signal, v.rejected) for v in expected
    ]


def test_an_unforeseen_error_dead_letters_the_message_instead_of_stopping_the_stream(monkeypatch):
    import streams.sieve

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug not yet found")

    monkeypatch.setattr(streams.sieve, "decode_events", broken)
    (result,) = sieve().sift(Source.WINLOGBEAT, codec.dumps({"resourceLogs": []}))
    assert result.rejected is not None and result.rejected.reason is RejectReason.BAD_VALUE
    assert "ZeroDivisionError" in result.rejected.detail


def test_the_sieve_routes_a_seen_to_the_partition_the_producer_gives_its_device():
    # `seen_many` messages go to an explicit partition; the device's other signals
    # go by key. Both must land where the device's state lives.
    all_partitions = list(range(8))
    for device in ("3f1e9c2a-0b7d-4c1e-9a55-000000000001", "pc-00042", "ä-host", ""):
        expected = DefaultPartitioner()(device.encode(), all_partitions, all_partitions)
        assert partition_of(device, 8) == expected


def test_seen_many_carries_each_seen_signal_back_out():
    signals = [
        Signal("pc-1", SignalKind.SEEN, 600_000, host="PC-1"),
        Signal("pc-2", SignalKind.SEEN, 1_200_000),
    ]
    message = Signal.from_wire(seen_many([(s.device, s.time_ms, s.host) for s in signals]).to_wire())
    assert message.kind is SignalKind.SEEN_MANY and message.time_ms == 1_200_000
    assert message.expand() == signals


def test_a_seen_batch_keeps_each_seen_once_on_its_devices_partition():
    batch = SeenBatch(partitions=4)
    first = Signal("pc-1", SignalKind.SEEN, 600_000, host="PC-1")
    later = Signal("pc-1", SignalKind.SEEN, 1_200_000, host="PC-1")
    other = Signal("pc-2", SignalKind.SEEN, 600_000)
    kept = [batch.add(signal) for signal in (first, other, first, later, other)]
    assert kept == [True, True, False, True, False]
    sent = {
        partition: [(s.device, s.time_ms, s.host) for s in message.expand()]
        for partition, message in batch.messages()
    }
    expected: dict[int, list[tuple[str, int, str]]] = {}
    for signal in (first, other, later):
        expected.setdefault(partition_of(signal.device, 4), []).append(
            (signal.device, signal.time_ms, signal.host)
        )
    assert sent == expected


def test_a_device_named_by_host_id_is_the_same_device_from_a_warm_sieve():
    # The sieve remembers which device a `host.id` names; what it remembers
    # must be what reading the document again would say, hostile ids included.
    warm = sieve()
    hosts: list[dict[str, Any]] = [
        {"id": "7fc9aebf", "name": "PC-1"},
        {"id": " 7fc9aebf ", "name": "PC-2"},
        {"id": "7fc9\x01aebf", "name": "PC-3"},
        {"id": "   ", "name": "PC-4"},
        {"name": "PC-5"},
        {"id": 42, "name": "PC-6"},
    ]
    for round_ in range(3):
        for number, host in enumerate(hosts):
            document = documents.security_4624(HOST, T0 + (round_ * 10 + number) * 3_600_000, 1, "alice")
            document["host"] = {**host, "name": f"{host['name']}-{round_}"}  # renamed: the id stays
            payload = codec.dumps(document)
            (expected,) = sieve().sift(Source.WINLOGBEAT, payload)
            (result,) = warm.sift(Source.WINLOGBEAT, payload)
            assert (result.sifted, result.signal, result.rejected) == (
                expected.sifted,
                expected.signal,
                expected.rejected,
            )


def test_a_device_read_partition_by_partition_hours_apart_passes_each_bucket_once():
    # Winlogbeat ships unkeyed: one device's records sit on every input partition,
    # and the consumer reads a partition's batch, then another's, hours behind it.
    documents_by_partition: list[list[bytes]] = [[], [], []]
    for record in range(6 * 60):  # one record a minute for six hours, dealt round the partitions
        document = documents.security_4624(HOST, T0 + record * 60_000, record, "alice")
        documents_by_partition[record % 3].append(codec.dumps(document))
    the_sieve = sieve()
    seen_times = [
        result.signal.time_ms
        for partition in documents_by_partition
        for payload in partition
        for result in the_sieve.sift(Source.WINLOGBEAT, payload)
        if result.sifted is Sifted.SEEN and result.signal is not None
    ]
    assert sorted(seen_times) == sorted(set(seen_times))
    assert len(seen_times) == len({(T0 + minute * 60_000) // SEEN_GRANULARITY_MS for minute in range(360)})


def test_a_seen_batch_splits_a_partitions_seen_into_messages_the_broker_accepts():
    batch = SeenBatch(partitions=1)
    devices = [f"{index:08d}-{'d' * 55}" for index in range(2 * MAX_SEEN_PER_MESSAGE + 1)]
    for device in devices:
        batch.add(Signal(device, SignalKind.SEEN, 1_764_000_000_000, host="H" * 63))
    messages = batch.messages()
    assert [len(message.seen) for _, message in messages] == [MAX_SEEN_PER_MESSAGE, MAX_SEEN_PER_MESSAGE, 1]
    assert [device for _, message in messages for device, _, _ in message.seen] == devices
    assert max(len(message.to_wire()) for _, message in messages) < 1_000_000
    batch.clear()
    assert len(batch) == 0 and batch.messages() == []
