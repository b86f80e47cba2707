"""Winlogbeat 7.x/8.x ECS documents -> `Signal`s (or why not).

Traps handled here (domain.md §6): `winlog.event_id` is a string since 7.13 and
a number before; `@timestamp` can be missing (then `winlog.time_created`);
every `event_data` value is a string and empty ones are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from streams import stopcodes
from streams.catalog import IGNORED_KBS, IGNORED_TITLE_MARKERS, RELEVANT_EVENTS, SHUTDOWN_KINDS
from streams.outcomes import Ignored, Outcome, Rejected, RejectReason, Seen
from streams.signals import Signal, SignalKind
from streams.timeutil import BadTimestamp, parse_event_time

MAX_DEVICE_KEY_LENGTH = 255
MAX_APP_NAME_LENGTH = 64
_KB_PATTERN = re.compile(r"KB(\d{6,8})\b", re.IGNORECASE)
_BUILD_IN_TITLE = re.compile(r"\((\d{5}\.\d{1,6})\)")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class FieldError(ValueError):
    """A field a rule needs is missing or malformed."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def normalise(document: Any, now_ms: int) -> Outcome:
    """One decoded Winlogbeat document -> Signal, Seen, Ignored or Rejected."""
    if not isinstance(document, dict):
        return Rejected(RejectReason.NOT_OBJECT, f"top level is {type(document).__name__}")
    winlog = document.get("winlog")
    if not isinstance(winlog, dict):
        return Rejected(RejectReason.NOT_WINLOGBEAT, "no winlog object")
    try:
        return _classify(document, winlog, now_ms)
    except FieldError as error:
        return Rejected(error.reason, error.detail)


def _classify(document: dict[str, Any], winlog: dict[str, Any], now_ms: int) -> Outcome:
    event_id = _event_id(winlog.get("event_id"))
    kind = RELEVANT_EVENTS.get((str(winlog.get("provider_name")), event_id))
    device = device_key(document, winlog)
    host = _host_name(document, winlog)
    stamp = _stamp(document, winlog)
    if kind is None:
        if stamp is None or not device:
            return Ignored("no device or event time")
        return Seen(device=device, host=host, stamp=stamp)
    if not device:
        raise FieldError(RejectReason.BAD_DEVICE, "no host.id, host.name or winlog.computer_name")
    if stamp is None:
        raise FieldError(RejectReason.MISSING_FIELD, "@timestamp")
    try:
        time_ms = parse_event_time(stamp, now_ms)
    except BadTimestamp as error:
        raise FieldError(RejectReason.BAD_TIMESTAMP, str(error)) from error
    event_data = winlog.get("event_data")
    data: dict[str, Any] = event_data if isinstance(event_data, dict) else {}
    base = Signal(
        device=device,
        kind=kind,
        time_ms=time_ms,
        host=host,
        record_key=_record_key(winlog),
        build=_os_field(document, "build"),
        arch=_host_field(document, "architecture"),
    )
    if kind is SignalKind.DIRTY_BOOT:
        return _kernel_power(base, data)
    if kind is SignalKind.BUGCHECK:
        code = _required(data, "param1", stopcodes.from_param1)
        return _replace(base, stop_code=code)
    if kind is SignalKind.BOOT_START:
        return _replace(base, build=_running_build(data) or base.build)
    if kind is SignalKind.APP_CRASH:
        return _replace(base, app=_app_name(data))
    if kind is SignalKind.RESTART:
        return _shutdown(base, data)
    if kind in (SignalKind.HELLO_FAILURE, SignalKind.HELLO_SUCCESS):
        return base
    return _install(base, data)


def _app_name(data: dict[str, Any]) -> str:
    """`AppName` as a bounded, lower-cased executable name."""
    raw = data.get("AppName")
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(RejectReason.MISSING_FIELD, "winlog.event_data.AppName")
    name = _CONTROL_CHARACTERS.sub("", raw.strip().replace("/", "\\").rsplit("\\", 1)[-1]).lower()
    if not name:
        raise FieldError(RejectReason.BAD_VALUE, "winlog.event_data.AppName is empty")
    return name[:MAX_APP_NAME_LENGTH]


def _shutdown(base: Signal, data: dict[str, Any]) -> Signal | Ignored:
    """User32 1074: a restart or a power off, from `param5`."""
    raw = data.get("param5")
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(RejectReason.MISSING_FIELD, "winlog.event_data.param5")
    kind = SHUTDOWN_KINDS.get(raw.strip().lower())
    if kind is None:
        return Ignored(f"shutdown kind {raw[:40]!r} is not one kbwatch reads")
    return _replace(base, kind=kind)


def _kernel_power(base: Signal, data: dict[str, Any]) -> Signal:
    code = _required(data, "BugcheckCode", stopcodes.from_decimal)
    if code == 0 and _held_power_button(data):
        return _replace(base, kind=SignalKind.FORCED_OFF)
    return _replace(base, stop_code=code)


def _held_power_button(data: dict[str, Any]) -> bool:
    long_press = str(data.get("LongPowerButtonPressDetected", "")).strip().lower() == "true"
    button_time = str(data.get("PowerButtonTimestamp", "0")).strip()
    return long_press or button_time not in ("", "0")


def _install(base: Signal, data: dict[str, Any]) -> Signal | Ignored:
    title = data.get("updateTitle")
    if not isinstance(title, str) or not title:
        raise FieldError(RejectReason.MISSING_FIELD, "winlog.event_data.updateTitle")
    match = _KB_PATTERN.search(title)
    if match is None:
        raise FieldError(RejectReason.BAD_VALUE, "updateTitle names no KB")
    kb = f"KB{match.group(1)}"
    lowered = title.lower()
    if kb in IGNORED_KBS or any(marker in lowered for marker in IGNORED_TITLE_MARKERS):
        return Ignored(f"{kb} is a definition or tool update")
    build = _BUILD_IN_TITLE.search(title)
    return _replace(
        base,
        kb=kb,
        build=build.group(1) if build else base.build,
        source="winlogbeat",
    )


def device_key(document: dict[str, Any], winlog: dict[str, Any]) -> str:
    """`host.id`, else lower-cased `host.name`, else lower-cased `winlog.computer_name`.

    Returns "" when the document names no device at all; raises on a hostile one.
    """
    host = document.get("host")
    if isinstance(host, dict):
        host_id = host.get("id")
        if isinstance(host_id, str) and host_id.strip():
            return _checked_key(host_id.strip())
        name = host.get("name")
        if isinstance(name, str) and name.strip():
            return _checked_key(name.strip().lower())
    computer = winlog.get("computer_name")
    if isinstance(computer, str) and computer.strip():
        return _checked_key(computer.strip().lower())
    return ""


def _checked_key(key: str) -> str:
    if len(key) > MAX_DEVICE_KEY_LENGTH:
        raise FieldError(RejectReason.BAD_DEVICE, "device key longer than 255 characters")
    if _CONTROL_CHARACTERS.search(key):
        raise FieldError(RejectReason.BAD_DEVICE, "device key contains control characters")
    return key


def _event_id(raw: object) -> int:
    # bool is an int subclass: `true` is not event 1.
    if isinstance(raw, int) and not isinstance(raw, bool):
        event_id = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        event_id = int(raw.strip())
    else:
        raise FieldError(RejectReason.BAD_EVENT_ID, "winlog.event_id is not a number")
    if not 0 <= event_id <= 0xFFFF:
        raise FieldError(RejectReason.BAD_EVENT_ID, "winlog.event_id outside 0-65535")
    return event_id


def _stamp(document: dict[str, Any], winlog: dict[str, Any]) -> str | None:
    stamp = document.get("@timestamp")
    if isinstance(stamp, str):
        return stamp
    created = winlog.get("time_created")
    return created if isinstance(created, str) else None


def _record_key(winlog: dict[str, Any]) -> str:
    record_id = winlog.get("record_id")
    if isinstance(record_id, bool) or not isinstance(record_id, int | str):
        return ""
    text = str(record_id).strip()
    if not text.isdigit() or len(text) > 20:
        return ""
    return f"{winlog.get('channel', '')}/{text}"[:300]


def _host_name(document: dict[str, Any], winlog: dict[str, Any]) -> str:
    name = _host_field(document, "name") or winlog.get("computer_name")
    return name[:255] if isinstance(name, str) else ""


def _host_field(document: dict[str, Any], name: str) -> str:
    host = document.get("host")
    value = host.get(name) if isinstance(host, dict) else None
    return value[:64] if isinstance(value, str) else ""


def _os_field(document: dict[str, Any], name: str) -> str:
    host = document.get("host")
    os_info = host.get("os") if isinstance(host, dict) else None
    value = os_info.get(name) if isinstance(os_info, dict) else None
    return value[:32] if isinstance(value, str) else ""


def _running_build(data: dict[str, Any]) -> str:
    major, revision = data.get("BuildVersion"), data.get("QfeVersion")
    if isinstance(major, str) and isinstance(revision, str) and major.isdigit() and revision.isdigit():
        return f"{major}.{revision}"
    return ""


def _required(data: dict[str, Any], name: str, parse: Callable[[str], int]) -> int:
    raw = data.get(name)
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(RejectReason.MISSING_FIELD, f"winlog.event_data.{name}")
    try:
        value: int = parse(raw)
    except ValueError as error:
        raise FieldError(RejectReason.BAD_VALUE, f"winlog.event_data.{name}: {error}") from error
    return value


def _replace(signal: Signal, **changes: Any) -> Signal:
    return replace(signal, **changes)
