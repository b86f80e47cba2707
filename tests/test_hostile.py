"""Hostile input: every message gets an outcome, nothing crashes, nothing grows unbounded."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import codec, documents
from streams.catalog import Catalog
from streams.clock import FleetClock
from streams.collectors import render
from streams.engine import Engine
from streams.formats.detect import Decoding, InputFormat
from streams.metrics import Metrics
from streams.outcomes import RejectReason
from streams.sieve import Sieve, Sifted, Source
from tests.builders import HOST, T0

NOW = T0 + 10**9
KERNEL_POWER = documents.kernel_power_41(HOST, T0, 1, 395)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON bytes can carry to orjson
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def sieve() -> Sieve:
    return Sieve(64 * 1024, clock=lambda: NOW)


def reasons_of(payload: bytes, source: Source = Source.WINLOGBEAT) -> list[str | None]:
    return [r.rejected.reason.value if r.rejected else None for r in sieve().sift(source, payload)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe\x00garbage", "not_json"),
        (b'{"winlog": {"event_id": NaN}}', "not_json"),
        (b'{"winlog": {"event_id": Infinity}}', "not_json"),
        (b'{"winlog": {"event_id": 1' + b"0" * 40 + b"}}", "bad_event_id"),  # read as a float 1e40
        (b"[" * 2000 + b"]" * 2000, "not_json"),  # nesting beyond the parser's limit
        (b'"just a string"', "not_object"),
        (b"x" * (64 * 1024 + 1), "too_large"),
        (b'{"who": "knows"}', "unknown_format"),
        (b"<Event><System></System>", "not_json"),  # broken XML
    ],
)
def test_hostile_bytes_are_refused_with_a_precise_reason(payload, reason):
    assert reasons_of(payload) == [reason]


FIELDS_A_RULE_READS = [
    ("@timestamp",),
    ("host", "id"),
    ("host", "name"),
    ("winlog", "event_id"),
    ("winlog", "provider_name"),
    ("winlog", "record_id"),
    ("winlog", "channel"),
    ("winlog", "computer_name"),
    ("winlog", "event_data"),
    ("winlog", "event_data", "BugcheckCode"),
    ("winlog", "event_data", "PowerButtonTimestamp"),
    ("winlog", "event_data", "LongPowerButtonPressDetected"),
]


@pytest.mark.parametrize("path", FIELDS_A_RULE_READS, ids=".".join)
@pytest.mark.parametrize("value", [None, 7, 3.5, True, [], {}, "", "x" * 300, {"nested": [1, 2]}], ids=repr)
def test_wrong_types_in_every_field_a_rule_reads_never_crash(path, value):
    document = copy.deepcopy(KERNEL_POWER)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    results = sieve().sift(Source.WINLOGBEAT, codec.dumps(document))
    assert len(results) == 1
    assert results[0].sifted in (Sifted.RELEVANT, Sifted.REJECTED, Sifted.IRRELEVANT, Sifted.SEEN)


@pytest.mark.parametrize("stamp", ["1970-01-01T00:00:00Z", "1601-01-01T00:00:00Z", "2999-12-31T00:00:00Z"])
def test_far_past_and_future_times_are_refused_and_never_move_the_fleet_clock(stamp):
    document = copy.deepcopy(KERNEL_POWER)
    document["@timestamp"] = stamp
    (result,) = sieve().sift(Source.WINLOGBEAT, codec.dumps(document))
    assert result.rejected is not None and result.rejected.reason is RejectReason.BAD_TIMESTAMP
    clock = FleetClock(allowed_lateness_ms=0)
    clock.observe(result.event_ms, "a-device", NOW)
    assert clock.newest_ms == 0


def test_a_device_clock_hours_ahead_counts_for_the_device_but_not_the_fleet_clock():
    clock = FleetClock(allowed_lateness_ms=0)
    clock.observe(NOW - 1000, "a-device", NOW)
    clock.observe(NOW + 20 * 3_600_000, "a-device", NOW)  # accepted by the sieve (< 24 h), ignored here
    assert clock.newest_ms == NOW - 1000


def test_a_flood_of_invented_devices_stays_bounded():
    limits = Catalog().limits
    catalog = Catalog(limits=type(limits)(max_devices=100))
    engine = Engine({}, catalog, Metrics.create())
    the_sieve = Sieve(64 * 1024, clock=lambda: NOW)
    for number in range(1000):
        host = documents.Host(host_id=f"fake-{number}", name=f"FAKE-{number}")
        for document in (documents.security_4624(host, T0, 1, "x"), documents.kernel_general_12(host, T0, 2)):
            for result in the_sieve.sift(Source.WINLOGBEAT, codec.dumps(document)):
                if result.signal is not None:
                    engine.process(result.signal)
    assert len(engine.states) == 100  # noise created none; boot records stopped at the limit
    sample = engine.metrics.registry.get_sample_value
    assert sample("kbwatch_signals_total", {"kind": "boot", "outcome": "refused"}) == 900
    for family in engine.metrics.registry.collect():
        for metric_sample in family.samples:
            assert not any("fake-" in value for value in metric_sample.labels.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_fuzzed_documents_of_every_shape_always_get_an_outcome(value):
    the_sieve = sieve()
    shapes = [
        value,
        {"winlog": value, "@timestamp": value, "host": value},
        {
            "winlog": {
                "provider_name": "Microsoft-Windows-Kernel-Power",
                "event_id": "41",
                "event_data": value,
            }
        },
        {"resourceLogs": value},
        {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"kvlistValue": {"values": value}}}]}]}]},
        {"event_id": value, "provider": value, "event_data": value, "system_time": value, "computer": value},
        {"EventTime": value, "SourceName": value, "Hostname": value, "EventID": value},
        {
            "ProviderName": value,
            "TimeCreated": value,
            "StringInserts": value,
            "Computer": value,
            "EventID": 41,
        },
    ]
    for shape in shapes:
        for result in the_sieve.sift(Source.WINLOGBEAT, codec.dumps(shape)):
            assert result.sifted in Sifted
    for shape in (value, {"TargetKBNumber": value, "DeviceName": value, "UpdateInstalledTime": value}):
        for result in the_sieve.sift(Source.INSTALLS, codec.dumps(shape)):
            assert result.sifted in Sifted


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=400))
def test_fuzzed_bytes_always_get_an_outcome(payload):
    for source in Source:
        assert sieve().sift(source, payload)
    assert sieve().sift(Source.WINLOGBEAT, b"<Event " + payload)
    assert sieve().sift(Source.WINLOGBEAT, b"\n" + payload)  # perhaps OTLP protobuf
    forced = Sieve(1 << 20, decoding=Decoding(events_format=InputFormat.OTLP_PROTO))
    assert forced.sift(Source.WINLOGBEAT, payload)


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5),
    form=st.sampled_from(
        [
            InputFormat.OTEL_RAW,
            InputFormat.OTLP_PROTO,
            InputFormat.NXLOG,
            InputFormat.FLUENTBIT,
            InputFormat.XML,
        ]
    ),
)
def test_fuzzed_event_data_in_every_collector_form_gets_an_outcome(data, form):
    document = copy.deepcopy(KERNEL_POWER)
    document["winlog"]["event_data"] = data
    rendered = render(document, form)
    payload = rendered if isinstance(rendered, bytes) else codec.dumps(rendered)
    assert sieve().sift(Source.WINLOGBEAT, payload)


@pytest.mark.parametrize("event_id", ["¹", "²³", "4¹"])
def test_superscript_digits_are_not_event_ids(event_id):
    """Found by hypothesis: `"¹".isdigit()` is true but `int("¹")` fails, which crashed the sieve."""
    for provider in ("Microsoft-Windows-Security-Auditing", "Microsoft-Windows-Kernel-Power"):
        document = copy.deepcopy(KERNEL_POWER)
        document["winlog"]["provider_name"] = provider
        document["winlog"]["event_id"] = event_id
        (result,) = sieve().sift(Source.WINLOGBEAT, codec.dumps(document))
        assert result.rejected is not None and result.rejected.reason is RejectReason.BAD_EVENT_ID


def test_otlp_protobuf_nested_past_protobufs_limit_is_refused_not_recursed():
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    value = request.resource_logs.add().scope_logs.add().log_records.add().body
    for _ in range(150):
        value = value.kvlist_value.values.add(key="k").value
    value.string_value = "deep"
    payload = request.SerializeToString()
    (sniffed,) = sieve().sift(Source.WINLOGBEAT, payload)
    assert sniffed.rejected is not None and sniffed.rejected.reason is RejectReason.NOT_JSON
    forced = Sieve(1 << 20, decoding=Decoding(events_format=InputFormat.OTLP_PROTO))
    (refused,) = forced.sift(Source.WINLOGBEAT, payload)
    assert refused.rejected is not None and refused.rejected.reason is RejectReason.BAD_VALUE
