"""The same Windows record as each collector ships it.

The simulator and the tests write one Winlogbeat document and render it for
OpenTelemetry (OTLP JSON, OTLP protobuf and `raw`, each `event_data` shape), NXLog, Fluent
Bit and raw XML, so that "the same record gives the same verdict whichever
collector shipped it" is checked on records that differ only in their form.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

from streams.formats.detect import EVENT_FORMATS, InputFormat
from streams.formats.fluentbit import INSERT_NAMES
from streams.formats.otlp_proto import otlp_proto_payload

# Winlogbeat first: the form every other is rendered from and compared with.
COLLECTOR_FORMATS = (InputFormat.WINLOGBEAT, *sorted(EVENT_FORMATS - {InputFormat.WINLOGBEAT}))


def render(document: dict[str, Any], form: InputFormat, zone: ZoneInfo | None = None, shape: int = 0) -> Any:
    """One Winlogbeat document in another collector's form (a dict, or bytes: XML, protobuf)."""
    if form is InputFormat.WINLOGBEAT:
        return document
    if form is InputFormat.OTEL_RAW:
        return otel_body(document, shape)
    if form is InputFormat.OTLP_JSON:
        return otlp_request([document], shape)
    if form is InputFormat.OTLP_PROTO:
        return otlp_proto_payload(otlp_request([document], shape))
    if form is InputFormat.NXLOG:
        return nxlog_record(document, zone or ZoneInfo("UTC"))
    if form is InputFormat.FLUENTBIT:
        return fluentbit_record(document, zone or ZoneInfo("UTC"))
    if form is InputFormat.XML:
        return event_xml(document)
    raise ValueError(f"{form} is not a collector format")


def _parts(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], datetime]:
    winlog = document["winlog"]
    moment = datetime.fromisoformat(document["@timestamp"]).astimezone(UTC)
    return winlog, dict(winlog.get("event_data", {})), moment


def otel_body(document: dict[str, Any], shape: int = 0) -> dict[str, Any]:
    """The `windowseventlog` body map; `shape` 0, 1, 2 picks the `event_data` form."""
    winlog, data, moment = _parts(document)
    if shape == 1:
        event_data: dict[str, Any] = {"data": [{name: value} for name, value in data.items()], "binary": ""}
    elif shape == 2:
        event_data = {
            (f"Data{name[5:]}" if name.startswith("param") else name): value for name, value in data.items()
        }
    else:
        event_data = data
    return {
        "channel": winlog["channel"],
        "computer": winlog["computer_name"],
        "event_id": {"id": int(winlog["event_id"]), "qualifiers": 0},
        "provider": {"name": winlog["provider_name"], "guid": "", "event_source": ""},
        "record_id": int(winlog["record_id"]),
        "system_time": moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
        "level": document.get("log", {}).get("level", "information").capitalize(),
        "message": document.get("message", ""),
        "event_data": event_data,
    }


def otlp_request(documents: Iterable[dict[str, Any]], shape: int = 0) -> dict[str, Any]:
    """An OTLP JSON export request holding the documents as log records (one resource per host)."""
    by_host: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_host.setdefault(document["host"]["id"], []).append(document)
    resource_logs = []
    for host_id, host_documents in by_host.items():
        host = host_documents[0]["host"]
        attributes = [
            {"key": "host.id", "value": {"stringValue": host_id}},
            {"key": "host.name", "value": {"stringValue": host["name"]}},
            {"key": "host.arch", "value": {"stringValue": host["architecture"]}},
            {"key": "os.version", "value": {"stringValue": host["os"]["build"]}},
        ]
        records = []
        for document in host_documents:
            _, _, moment = _parts(document)
            records.append(
                {
                    "timeUnixNano": str(int(moment.timestamp() * 1_000_000_000)),
                    "observedTimeUnixNano": str(int(moment.timestamp() * 1_000_000_000) + 800_000_000),
                    "severityText": "INFO",
                    "body": _any_value(otel_body(document, shape)),
                }
            )
        resource_logs.append(
            {
                "resource": {"attributes": attributes},
                "scopeLogs": [{"scope": {"name": "windowseventlog"}, "logRecords": records}],
            }
        )
    return {"resourceLogs": resource_logs}


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 as a decimal string, as OTLP JSON writes it
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": _any_value(v)} for k, v in value.items()]}}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_any_value(item) for item in value]}}
    return {"stringValue": str(value)}


def nxlog_record(document: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """NXLog `to_json()`: flat, `EventTime` local to `zone` without an offset."""
    winlog, data, moment = _parts(document)
    record: dict[str, Any] = {
        "EventTime": moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
        "Hostname": winlog["computer_name"],
        "EventID": int(winlog["event_id"]),
        "SourceName": winlog["provider_name"],
        "Channel": winlog["channel"],
        "RecordNumber": int(winlog["record_id"]),
        "Message": document.get("message", ""),
    }
    record.update(data)
    return record


def fluentbit_record(document: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """Fluent Bit `winevtlog`: positional inserts, `TimeCreated` local with an offset."""
    winlog, data, moment = _parts(document)
    event_id = int(winlog["event_id"])
    names = INSERT_NAMES.get((winlog["provider_name"], event_id)) or tuple(data)
    inserts: list[Any] = [data.get(name, "") for name in names]
    if names and names[0] == "BugcheckCode" and inserts[0].isdecimal():
        inserts[0] = int(inserts[0])  # Fluent Bit writes Kernel-Power 41's code as a number
    local = moment.astimezone(zone)
    return {
        "ProviderName": winlog["provider_name"],
        "EventID": event_id,
        "Channel": winlog["channel"],
        "Computer": winlog["computer_name"],
        "EventRecordID": int(winlog["record_id"]),
        "TimeCreated": local.strftime("%Y-%m-%d %H:%M:%S %z"),
        "Level": 2,
        "StringInserts": inserts,
    }


def event_xml(document: dict[str, Any]) -> bytes:
    """The rendered event XML; `param<n>` items become unnamed `<Data>`."""
    winlog, data, moment = _parts(document)
    items = "".join(
        f"<Data>{escape(value)}</Data>"
        if name.startswith("param")
        else f"<Data Name={quoteattr(name)}>{escape(value)}</Data>"
        for name, value in data.items()
    )
    return (
        '<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>'
        f"<Provider Name={quoteattr(winlog['provider_name'])} />"
        f"<EventID>{int(winlog['event_id'])}</EventID><Level>2</Level>"
        f'<TimeCreated SystemTime="{moment.strftime("%Y-%m-%dT%H:%M:%S.%f")}0Z" />'
        f"<EventRecordID>{int(winlog['record_id'])}</EventRecordID>"
        f"<Channel>{escape(winlog['channel'])}</Channel><Computer>{escape(winlog['computer_name'])}</Computer>"
        f"</System><EventData>{items}</EventData></Event>"
    ).encode()
