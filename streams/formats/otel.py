"""OpenTelemetry Collector `windowseventlog` records, through the Kafka exporter.

As OTLP JSON (`resourceLogs[].scopeLogs[].logRecords[]`, the body a
`kvlistValue`, int64 as decimal strings) or `raw` (the body alone, a JSON
map). The body's `event_data` changed shape twice (domain.md §6): a
`{Name: value}` map; then `{"data": [{"Name": "value"}, ...], "binary": ...}`;
then (2026) a flat map again with unnamed items as `Data1`, `Data2`. All three
are read, and unnamed items become `param1`, `param2` as Winlogbeat names them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from streams.formats.event import FieldError, WindowsEvent, checked_key, text
from streams.outcomes import RejectReason

_UNNAMED = re.compile(r"^Data(\d+)$")
MAX_LOG_RECORDS = 10_000


def otlp_events(document: dict[str, Any]) -> Iterator[WindowsEvent]:
    """Every log record of an OTLP JSON export request, as events."""
    resource_logs = document.get("resourceLogs")
    if not isinstance(resource_logs, list):
        raise FieldError(RejectReason.NOT_WINLOGBEAT, "resourceLogs is not a list")
    count = 0
    for resource_log in resource_logs:
        if not isinstance(resource_log, dict):
            raise FieldError(RejectReason.BAD_VALUE, "resourceLogs[] is not an object")
        resource = _attributes(_dig(resource_log, "resource", "attributes"))
        for scope_log in _list(resource_log.get("scopeLogs")):
            for record in _list(scope_log.get("logRecords") if isinstance(scope_log, dict) else None):
                count += 1
                if count > MAX_LOG_RECORDS:
                    raise FieldError(RejectReason.TOO_LARGE, f"more than {MAX_LOG_RECORDS} log records")
                body = any_value(record.get("body")) if isinstance(record, dict) else None
                if not isinstance(body, dict):
                    raise FieldError(RejectReason.BAD_VALUE, "logRecord body is not a map")
                yield body_event(body, resource)


def body_event(body: dict[str, Any], resource: dict[str, Any] | None = None) -> WindowsEvent:
    """The `windowseventlog` body map (the whole message in `raw` encoding)."""
    resource = resource or {}
    event_id = body.get("event_id")
    provider = body.get("provider")
    computer = text(body.get("computer"))
    host_id = resource.get("host.id")
    if isinstance(host_id, str) and host_id.strip():
        device = checked_key(host_id.strip())
    else:
        device = checked_key(computer.strip().lower()) if computer.strip() else ""
    return WindowsEvent(
        provider=str(provider.get("name")) if isinstance(provider, dict) else str(provider),
        event_id=event_id.get("id") if isinstance(event_id, dict) else event_id,
        stamp=body.get("system_time") if isinstance(body.get("system_time"), str) else None,
        device=device,
        host=text(resource.get("host.name")) or computer,
        channel=text(body.get("channel")),
        record_id=body.get("record_id"),
        data=event_data(body.get("event_data")),
        build=text(resource.get("os.version") or resource.get("host.os.build"), 32),
        arch=text(resource.get("host.arch"), 64),
    )


def event_data(raw: object) -> dict[str, Any]:
    """Any of the three `event_data` shapes as one `{name: value}` map."""
    if not isinstance(raw, dict):
        return {}
    items = raw.get("data")
    if isinstance(items, list):
        merged: dict[str, Any] = {}
        for position, item in enumerate(items, start=1):
            if isinstance(item, dict):
                for name, value in item.items():
                    merged[name or f"param{position}"] = value
        return merged
    flat = {}
    for name, value in raw.items():
        unnamed = _UNNAMED.match(name)
        flat[f"param{unnamed.group(1)}" if unnamed else name] = value
    return flat


def any_value(value: object) -> Any:
    """An OTLP JSON `AnyValue` as a plain Python value."""
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        raw = value["intValue"]
        return int(raw) if isinstance(raw, int | str) and str(raw).lstrip("-").isdecimal() else None
    if "boolValue" in value:
        return value["boolValue"]
    if "doubleValue" in value:
        return value["doubleValue"]
    if "kvlistValue" in value:
        return _attributes(_dig(value, "kvlistValue", "values"))
    if "arrayValue" in value:
        return [any_value(item) for item in _list(_dig(value, "arrayValue", "values"))]
    return None


def _attributes(pairs: object) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in _list(pairs):
        if isinstance(pair, dict) and isinstance(pair.get("key"), str):
            result[pair["key"]] = any_value(pair.get("value"))
    return result


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
