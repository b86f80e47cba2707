"""Normalisation of Winlogbeat documents, trap by trap (domain.md §2, §4, §6)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from streams import codec, documents
from streams.outcomes import Ignored, Rejected, RejectReason, Seen
from streams.signals import Signal, SignalKind
from streams.winlogbeat import normalise
from tests.builders import HOST, T0

NOW = T0 + 10**9
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "all_winlogbeat.ndjson"


def test_kernel_power_41_is_a_dirty_boot_with_its_decimal_stop_code():
    signal = normalise(documents.kernel_power_41(HOST, T0, 500, 0x18B), NOW)
    assert isinstance(signal, Signal)
    assert signal.kind is SignalKind.DIRTY_BOOT
    assert signal.stop_code == 0x18B
    assert signal.device == HOST.host_id
    assert signal.record_key == "System/500"
    assert signal.arch == "arm64"


def test_a_held_power_button_is_not_a_crash():
    signal = normalise(documents.kernel_power_41(HOST, T0, 500, 0, power_button=True), NOW)
    assert isinstance(signal, Signal) and signal.kind is SignalKind.FORCED_OFF


def test_long_press_alone_marks_a_forced_power_off():
    document = documents.kernel_power_41(HOST, T0, 500, 0)
    document["winlog"]["event_data"]["LongPowerButtonPressDetected"] = "true"
    signal = normalise(document, NOW)
    assert isinstance(signal, Signal) and signal.kind is SignalKind.FORCED_OFF


def test_code_zero_without_the_button_is_still_a_dirty_boot():
    signal = normalise(documents.kernel_power_41(HOST, T0, 500, 0), NOW)
    assert isinstance(signal, Signal) and signal.kind is SignalKind.DIRTY_BOOT


def test_bugcheck_1001_reads_the_hex_param1():
    signal = normalise(documents.bugcheck_1001(HOST, T0, 501, 0x18D), NOW)
    assert isinstance(signal, Signal)
    assert (signal.kind, signal.stop_code) == (SignalKind.BUGCHECK, 0x18D)


def test_kernel_general_12_carries_the_running_build():
    signal = normalise(documents.kernel_general_12(HOST, T0, 502), NOW)
    assert isinstance(signal, Signal)
    assert (signal.kind, signal.build) == (SignalKind.BOOT_START, "26100.3775")


def test_update_19_gives_the_kb_and_build_from_the_title():
    signal = normalise(documents.update_installed_19(HOST, T0, 503, "KB5055523", build="26100.3775"), NOW)
    assert isinstance(signal, Signal)
    assert (signal.kind, signal.kb, signal.build) == (SignalKind.INSTALL, "KB5055523", "26100.3775")


def test_defender_definition_updates_never_count_as_installs():
    title = "Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.427.115.0)"
    outcome = normalise(documents.update_installed_19(HOST, T0, 504, "KB2267602", title), NOW)
    assert isinstance(outcome, Ignored)


def test_winlogbeat_7_numeric_event_ids_work():
    document = documents.kernel_power_41(HOST, T0, 500, 395)
    document["winlog"]["event_id"] = 41
    signal = normalise(document, NOW)
    assert isinstance(signal, Signal) and signal.kind is SignalKind.DIRTY_BOOT


def test_time_created_stands_in_for_a_missing_timestamp():
    document = documents.kernel_power_41(HOST, T0, 500)
    document["winlog"]["time_created"] = document.pop("@timestamp")
    signal = normalise(document, NOW)
    assert isinstance(signal, Signal) and signal.time_ms == T0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"id": "ABC-GUID", "name": "PC-1", "computer": "PC-1.CORP"}, "ABC-GUID"),
        ({"name": "PC-1", "computer": "PC-1.CORP"}, "pc-1"),
        ({"computer": "PC-1.CORP.EXAMPLE"}, "pc-1.corp.example"),
    ],
)
def test_device_key_precedence(fields, expected):
    document = documents.kernel_power_41(HOST, T0, 500)
    document["host"] = {key: fields[key] for key in ("id", "name") if key in fields}
    document["winlog"]["computer_name"] = fields.get("computer", "")
    signal = normalise(document, NOW)
    assert isinstance(signal, Signal) and signal.device == expected


def test_noise_tells_only_the_device_time():
    outcome = normalise(documents.security_4624(HOST, T0, 9, "alice"), NOW)
    assert isinstance(outcome, Seen)
    assert outcome.device == HOST.host_id


def _broken(mutate):
    document = copy.deepcopy(documents.kernel_power_41(HOST, T0, 500))
    mutate(document)
    return normalise(document, NOW)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d["winlog"]["event_data"].pop("BugcheckCode"), RejectReason.MISSING_FIELD),
        (lambda d: d["winlog"]["event_data"].update(BugcheckCode="lots"), RejectReason.BAD_VALUE),
        (lambda d: d["winlog"].update(event_id=True), RejectReason.BAD_EVENT_ID),
        (lambda d: d["winlog"].update(event_id="4.1e1"), RejectReason.BAD_EVENT_ID),
        (lambda d: d["winlog"].update(event_id=10**9), RejectReason.BAD_EVENT_ID),
        (lambda d: d.update({"@timestamp": "2025-04-08 14:00"}), RejectReason.BAD_TIMESTAMP),
        (lambda d: d.update({"@timestamp": "2999-01-01T00:00:00Z"}), RejectReason.BAD_TIMESTAMP),
        (lambda d: d["host"].update(id="PC\x00-1"), RejectReason.BAD_DEVICE),
        (lambda d: d["host"].update(id="x" * 300), RejectReason.BAD_DEVICE),
        (lambda d: d.pop("winlog"), RejectReason.NOT_WINLOGBEAT),
    ],
)
def test_records_a_rule_cannot_use_are_rejected_with_the_reason(mutate, reason):
    outcome = _broken(mutate)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is reason
    assert outcome.detail


def test_a_crash_record_naming_no_device_is_rejected():
    def strip_device(document):
        document.pop("host")
        document["winlog"].pop("computer_name")

    outcome = _broken(strip_device)
    assert isinstance(outcome, Rejected) and outcome.reason is RejectReason.BAD_DEVICE


def test_a_non_object_is_rejected():
    outcome = normalise([1, 2, 3], NOW)
    assert isinstance(outcome, Rejected) and outcome.reason is RejectReason.NOT_OBJECT


@pytest.mark.skipif(not CORPUS.is_file(), reason="../shared/corpus is not beside this checkout")
def test_every_real_winlogbeat_document_is_accepted_or_irrelevant_never_rejected():
    lines = [line for line in CORPUS.read_bytes().splitlines() if line.strip()]
    assert len(lines) >= 40
    for line in lines:
        outcome = normalise(codec.loads(line), NOW)
        assert isinstance(outcome, Seen | Ignored | Signal), (outcome, line[:200])
