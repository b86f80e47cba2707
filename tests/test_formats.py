"""Every collector's format: the same Windows record gives the same verdict."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams import codec, documents
from streams.catalog import Catalog
from streams.collectors import COLLECTOR_FORMATS, otlp_request, render
from streams.formats.detect import Decoding, InputFormat
from streams.formats.otlp_proto import otlp_proto_payload
from streams.outcomes import RejectReason
from streams.replay import replay
from streams.sieve import Sieve, Sifted, Source
from streams.simulate import FleetPlan, spring_2025, write_fleet
from tests.builders import HOST, T0

NOW = T0 + 10**9
BERLIN = ZoneInfo("Europe/Berlin")
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
RECORDS = {
    "kernel-power-41": documents.kernel_power_41(HOST, T0, 101, 0x18B),
    "power-button-41": documents.kernel_power_41(HOST, T0, 102, 0, power_button=True),
    "bugcheck-1001": documents.bugcheck_1001(HOST, T0, 103, 0x18D),
    "kernel-general-12": documents.kernel_general_12(HOST, T0, 104),
    "update-19": documents.update_installed_19(HOST, T0, 105, "KB5055523", build="26100.3775"),
    "hello-7002": documents.hello_event(HOST, T0, 106, 7002, error="0x80090016"),
    "biometrics-1001": documents.hello_event(HOST, T0, 107, 1001),
    "application-1000": documents.application_1000(HOST, T0, 108, "RobloxPlayerBeta.exe"),
    "user32-1074": documents.user32_1074(HOST, T0, 109, "restart"),
    "noise-4624": documents.security_4624(HOST, T0, 110, "alice"),
}


def sift_as(form: InputFormat, document: dict[str, Any], shape: int = 0):
    rendered = render(document, form, BERLIN, shape)
    payload = rendered if isinstance(rendered, bytes) else codec.dumps(rendered)
    decoding = Decoding(nxlog_zone=BERLIN)
    return Sieve(1 << 20, clock=lambda: NOW, decoding=decoding).sift(Source.WINLOGBEAT, payload)


def meaning(result):
    """What the rules see, without the device key (collectors name devices differently)."""
    if result.signal is None:
        return (result.sifted, result.rejected)
    return (result.sifted, replace(result.signal, device="", host="", build="", arch=""))


@pytest.mark.parametrize("form", COLLECTOR_FORMATS, ids=str)
@pytest.mark.parametrize("name", sorted(RECORDS))
def test_each_collector_gives_the_same_signal_as_winlogbeat(form, name):
    expected = [meaning(r) for r in sift_as(InputFormat.WINLOGBEAT, RECORDS[name])]
    for shape in (0, 1, 2):
        results = sift_as(form, RECORDS[name], shape)
        assert [meaning(r) for r in results] == expected
        assert {r.input_format for r in results} == {form.value}


def test_fluent_bit_times_with_an_offset_and_numeric_codes_are_read():
    record = render(RECORDS["kernel-power-41"], InputFormat.FLUENTBIT, BERLIN)
    assert record["TimeCreated"].endswith("+0200") and record["StringInserts"][0] == 395
    (result,) = Sieve(1 << 20, clock=lambda: NOW).sift(Source.WINLOGBEAT, codec.dumps(record))
    assert result.signal is not None and result.signal.time_ms == T0 and result.signal.stop_code == 0x18B


def test_nxlog_local_time_needs_the_configured_zone():
    record = codec.dumps(render(RECORDS["kernel-power-41"], InputFormat.NXLOG, BERLIN))
    (berlin,) = Sieve(1 << 20, clock=lambda: NOW, decoding=Decoding(nxlog_zone=BERLIN)).sift(
        Source.WINLOGBEAT, record
    )
    (utc,) = Sieve(1 << 20, clock=lambda: NOW).sift(Source.WINLOGBEAT, record)
    assert berlin.signal is not None and utc.signal is not None
    assert berlin.signal.time_ms == T0
    assert utc.signal.time_ms - T0 == 2 * 3_600_000  # read as UTC, two hours off


@pytest.mark.parametrize("encoding", [InputFormat.OTLP_JSON, InputFormat.OTLP_PROTO], ids=str)
def test_an_otlp_batch_with_a_bad_record_keeps_the_good_ones(encoding):
    bad = documents.kernel_power_41(HOST, T0, 201)
    bad["winlog"]["event_data"]["BugcheckCode"] = "lots"
    request = otlp_request([RECORDS["kernel-power-41"], bad, RECORDS["bugcheck-1001"]])
    payload = codec.dumps(request) if encoding is InputFormat.OTLP_JSON else otlp_proto_payload(request)
    results = Sieve(1 << 20, clock=lambda: NOW).sift(Source.WINLOGBEAT, payload)
    assert [r.sifted for r in results] == [Sifted.RELEVANT, Sifted.REJECTED, Sifted.RELEVANT]
    assert results[1].rejected is not None and results[1].rejected.reason is RejectReason.BAD_VALUE
    assert {r.input_format for r in results} == {encoding.value}


def test_otlp_protobuf_is_told_apart_from_json_that_starts_with_a_newline_and_from_garbage():
    sieve = Sieve(1 << 20, clock=lambda: NOW)
    record = RECORDS["kernel-power-41"]
    (json_line,) = sieve.sift(Source.WINLOGBEAT, b"\n" + codec.dumps(record))
    assert (json_line.sifted, json_line.input_format) == (Sifted.RELEVANT, "winlogbeat")
    payload = render(record, InputFormat.OTLP_PROTO)
    (cut,) = sieve.sift(Source.WINLOGBEAT, payload[: len(payload) // 2])
    assert cut.rejected is not None and cut.rejected.reason is RejectReason.NOT_JSON
    # One empty resource block is a request, as `{"resourceLogs": [{}]}` is in JSON: without records.
    (empty,) = sieve.sift(Source.WINLOGBEAT, b"\n\x00")
    assert empty.rejected is not None and empty.rejected.reason is RejectReason.MISSING_FIELD
    assert empty.input_format == "otlp_proto"
    (empty_json,) = sieve.sift(Source.WINLOGBEAT, b'{"resourceLogs": [{}]}')
    assert empty_json.rejected == empty.rejected


def test_a_forced_otlp_protobuf_topic_says_what_is_not_a_request():
    forced = Sieve(1 << 20, clock=lambda: NOW, decoding=Decoding(events_format=InputFormat.OTLP_PROTO))
    for payload in (codec.dumps(RECORDS["kernel-power-41"]), b"", b"\n\x05\xff"):
        (result,) = forced.sift(Source.WINLOGBEAT, payload)
        assert result.rejected is not None and result.rejected.reason is RejectReason.BAD_VALUE
        assert result.rejected.detail.startswith("not an OTLP protobuf logs request")
    (kept,) = forced.sift(Source.WINLOGBEAT, render(RECORDS["kernel-power-41"], InputFormat.OTLP_PROTO))
    assert (kept.sifted, kept.input_format) == (Sifted.RELEVANT, "otlp_proto")


def test_unknown_json_is_named_as_such():
    (result,) = Sieve(1 << 20, clock=lambda: NOW).sift(Source.WINLOGBEAT, b'{"hello": "world"}')
    assert result.rejected is not None and result.rejected.reason is RejectReason.UNKNOWN_FORMAT


def test_a_forced_format_reads_only_that_format():
    decoding = Decoding(events_format=InputFormat.NXLOG)
    (result,) = Sieve(1 << 20, clock=lambda: NOW, decoding=decoding).sift(
        Source.WINLOGBEAT, codec.dumps(RECORDS["kernel-power-41"])
    )
    assert result.sifted is Sifted.REJECTED


def test_xml_entities_are_refused():
    payload = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Event>&a;</Event>'
    (result,) = Sieve(1 << 20, clock=lambda: NOW).sift(Source.WINLOGBEAT, payload)
    assert result.rejected is not None and result.rejected.reason is RejectReason.BAD_VALUE


def test_wufb_rows_are_installs_matched_by_name_or_id_map():
    row = {
        "DeviceName": "PC-00042",
        "AzureADDeviceId": "5c1f0a3e-0000-4000-8000-00000000aaaa",
        "TargetKBNumber": "5055523",
        "TargetBuild": "10.0.26100.3775",
        "UpdateInstalledTime": "2025-04-08T14:00:00Z",
        "ClientSubstate": "UpdateInstalled",
    }
    (by_name,) = Sieve(1 << 20, clock=lambda: NOW).sift(Source.INSTALLS, codec.dumps(row))
    assert by_name.signal is not None
    assert (by_name.signal.device, by_name.signal.kb, by_name.signal.time_ms) == ("pc-00042", "KB5055523", T0)
    mapped = Decoding(wufb_device_map={row["AzureADDeviceId"]: HOST.host_id})
    (by_id,) = Sieve(1 << 20, clock=lambda: NOW, decoding=mapped).sift(Source.INSTALLS, codec.dumps(row))
    assert by_id.signal is not None and by_id.signal.device == HOST.host_id
    pending = {**row, "UpdateInstalledTime": None, "ClientSubstate": "DownloadStarted"}
    (not_yet,) = Sieve(1 << 20, clock=lambda: NOW).sift(Source.INSTALLS, codec.dumps(pending))
    assert not_yet.sifted is Sifted.IRRELEVANT


def verdicts(collector: InputFormat) -> list[tuple[str, str, str, str, str]]:
    plan = FleetPlan(devices=160, seed=21, collector=collector)
    stream, _ = spring_2025(plan)
    sieve = Sieve(1 << 20, decoding=Decoding(nxlog_zone=ZoneInfo(plan.zone)))
    summary = replay(((str(i), r.value) for i, r in enumerate(stream)), catalog=Catalog(), sieve=sieve)
    final = {}
    for alert in summary.alerts:
        final[
            alert.fingerprint
            if "device" not in alert.labels
            else (
                alert.labels["host"].split(".")[0].lower(),
                alert.labels["alertname"],
                alert.labels.get("app", ""),
                alert.labels["kb"],
            )
        ] = (
            alert.labels["alertname"],
            alert.labels["kb"],
            alert.status,
            alert.starts_at[:19],  # NXLog and Fluent Bit write whole seconds
            alert.ends_at[:19],
        )
    return sorted(final.values())


def test_the_same_incident_shipped_by_each_collector_yields_the_same_alerts():
    expected = verdicts(InputFormat.WINLOGBEAT)
    assert {alertname for alertname, *_ in expected} >= {
        "PostUpdateBootLoop",
        "DeviceSilentAfterUpdate",
        "PostUpdateHelloFailure",
        "PostUpdateAppCrashLoop",
    }
    for collector in COLLECTOR_FORMATS[1:]:
        assert verdicts(collector) == expected, collector


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not beside this checkout")
def test_every_document_of_the_shared_corpus_is_accepted_or_irrelevant():
    sieve = Sieve(1 << 20)  # the real clock: the corpus has records up to its own day
    payloads = [line for line in (CORPUS / "all_winlogbeat.ndjson").read_bytes().splitlines() if line.strip()]
    for path in sorted((CORPUS / "xml").glob("*.xml")):
        content = path.read_bytes()
        lines = [line for line in content.splitlines() if line.strip()]
        # One event per message; a file of one event per line is several messages.
        one_per_line = len(lines) > 1 and all(line.lstrip().startswith(b"<Event") for line in lines)
        payloads += lines if one_per_line else [content]
    assert len(payloads) >= 50
    for payload in payloads:
        for result in sieve.sift(Source.WINLOGBEAT, payload):
            assert result.sifted is not Sifted.REJECTED, (result.rejected, payload[:200])


def test_the_simulator_will_not_write_protobuf_into_an_ndjson_file(tmp_path):
    target = tmp_path / "fleet.ndjson"
    completed = subprocess.run(
        [sys.executable, "-m", "streams.cli", "simulate", "--collector", "otlp_proto", "-o", str(target)],
        capture_output=True,
    )
    assert completed.returncode == 2
    assert b"binary" in completed.stderr and not target.exists()
    with pytest.raises(ValueError, match="binary"):
        write_fleet(FleetPlan(devices=10, collector=InputFormat.OTLP_PROTO), str(target))
