"""Which collector wrote a message, and the outcomes of its records.

Detected per message by the keys each format alone has, or forced per topic
by configuration. The common Winlogbeat path costs one dictionary look-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from streams.formats.event import FieldError, WindowsEvent, classify
from streams.formats.fluentbit import fluentbit_event
from streams.formats.nxlog import nxlog_event
from streams.formats.otel import body_event, otlp_events
from streams.formats.otlp_proto import otlp_proto_events, otlp_proto_request
from streams.formats.wufb import wufb_install
from streams.formats.xml_event import xml_event
from streams.installs import normalise_install
from streams.outcomes import Outcome, Rejected, RejectReason
from streams.winlogbeat import to_event


class InputFormat(StrEnum):
    """Input formats; values are what `KBWATCH_*_FORMAT` and `kbwatch validate` name."""

    AUTO = "auto"
    WINLOGBEAT = "winlogbeat"
    OTLP_JSON = "otlp_json"
    OTLP_PROTO = "otlp_proto"
    OTEL_RAW = "otel_raw"
    XML = "xml"
    NXLOG = "nxlog"
    FLUENTBIT = "fluentbit"
    NATIVE = "native"
    WUFB = "wufb"


EVENT_FORMATS = frozenset(
    {
        InputFormat.WINLOGBEAT,
        InputFormat.OTLP_JSON,
        InputFormat.OTLP_PROTO,
        InputFormat.OTEL_RAW,
        InputFormat.XML,
        InputFormat.NXLOG,
        InputFormat.FLUENTBIT,
    }
)
INSTALL_FORMATS = frozenset({InputFormat.NATIVE, InputFormat.WUFB})


@dataclass(frozen=True, slots=True)
class Decoding:
    """How to read the inputs: forced formats, NXLog's zone, the WUfB device map."""

    events_format: InputFormat = InputFormat.AUTO
    installs_format: InputFormat = InputFormat.AUTO
    nxlog_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    wufb_device_map: Mapping[str, str] = field(default_factory=dict)


def looks_like_xml(payload: bytes) -> bool:
    # Asked of every record: spare the copy `lstrip` makes when nothing leads.
    head = payload[:1]
    return head == b"<" or (head.isspace() and payload.lstrip()[:1] == b"<")


def event_format(document: dict[str, Any]) -> InputFormat | None:
    """The collector format of a decoded event message, by its own keys."""
    if "winlog" in document:
        return InputFormat.WINLOGBEAT
    if "resourceLogs" in document:
        return InputFormat.OTLP_JSON
    if "event_id" in document and "provider" in document:
        return InputFormat.OTEL_RAW
    if "SourceName" in document and "EventTime" in document:
        return InputFormat.NXLOG
    if "ProviderName" in document and "TimeCreated" in document:
        return InputFormat.FLUENTBIT
    return None


def install_format(document: dict[str, Any]) -> InputFormat:
    return InputFormat.WUFB if "TargetKBNumber" in document else InputFormat.NATIVE


def decode_events(
    document: Any, chosen: InputFormat, decoding: Decoding, now_ms: int
) -> tuple[InputFormat | None, list[Outcome]]:
    """A decoded event message -> its format and one outcome per record."""
    if not isinstance(document, dict):
        return chosen, [Rejected(RejectReason.NOT_OBJECT, f"top level is {type(document).__name__}")]
    found = event_format(document) if chosen is InputFormat.AUTO else chosen
    try:
        if found is InputFormat.WINLOGBEAT:
            return found, [classify(to_event(document), now_ms)]
        if found is InputFormat.OTLP_JSON:
            return found, _records(otlp_events(document), now_ms)
        if found is InputFormat.OTEL_RAW:
            return found, [classify(body_event(document), now_ms)]
        if found is InputFormat.NXLOG:
            return found, [classify(nxlog_event(document, decoding.nxlog_zone), now_ms)]
        if found is InputFormat.FLUENTBIT:
            return found, [classify(fluentbit_event(document), now_ms)]
    except FieldError as error:
        return found, [Rejected(error.reason, error.detail)]
    detail = "no known collector's fields (winlog, resourceLogs, event_id+provider, SourceName, ProviderName)"
    return None, [Rejected(RejectReason.UNKNOWN_FORMAT, detail)]


def decode_otlp_proto(payload: bytes, now_ms: int) -> list[Outcome]:
    """An OTLP protobuf request -> one outcome per record, as its OTLP JSON would give."""
    try:
        request = otlp_proto_request(payload)
    except FieldError as error:
        return [Rejected(error.reason, error.detail)]
    return _proto_outcomes(request, now_ms)


def sniff_otlp_proto(payload: bytes, now_ms: int) -> list[Outcome] | None:
    """For a message that is not JSON: its outcomes if it is an OTLP protobuf request, else None."""
    try:
        request = otlp_proto_request(payload)
    except FieldError:
        return None
    return _proto_outcomes(request, now_ms)


def _proto_outcomes(request: ExportLogsServiceRequest, now_ms: int) -> list[Outcome]:
    try:
        return _records(otlp_proto_events(request), now_ms)
    except FieldError as error:
        return [Rejected(error.reason, error.detail)]


def _records(events: Iterator[WindowsEvent], now_ms: int) -> list[Outcome]:
    """The outcome of each record of an OTLP request (raises `FieldError` for a malformed one)."""
    outcomes: list[Outcome] = [classify(event, now_ms) for event in events]
    return outcomes or [Rejected(RejectReason.MISSING_FIELD, "no log records")]


def decode_xml(payload: bytes, now_ms: int) -> list[Outcome]:
    try:
        return [classify(xml_event(payload), now_ms)]
    except FieldError as error:
        return [Rejected(error.reason, error.detail)]


def decode_install(
    document: Any, chosen: InputFormat, decoding: Decoding, now_ms: int
) -> tuple[InputFormat, list[Outcome]]:
    """A decoded install message -> its format and outcome."""
    if not isinstance(document, dict):
        return chosen, [Rejected(RejectReason.NOT_OBJECT, f"top level is {type(document).__name__}")]
    found = install_format(document) if chosen is InputFormat.AUTO else chosen
    if found is InputFormat.WUFB:
        return found, [wufb_install(document, now_ms, decoding.wufb_device_map)]
    return found, [normalise_install(document, now_ms)]
