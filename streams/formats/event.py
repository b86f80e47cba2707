"""The Windows event as every collector describes it, and what the rules make of it.

Each collector adapter (Winlogbeat, OpenTelemetry, NXLog, Fluent Bit, raw XML)
only finds the same few facts in its own shape; `classify` is the one place
that decides what a record means, so the same Windows record gives the same
verdict whichever collector shipped it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class FieldError(ValueError):
    """A field a rule needs is missing or malformed."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class WindowsEvent:
    """The facts of one Windows event record, as any collector carries them."""

    provider: str
    event_id: object  # as the collector wrote it: checked by `classify`
    stamp: str | None  # event time, RFC 3339 with an offset
    device: str  # the device key, "" when the document names none
    host: str = ""
    channel: str = ""
    record_id: object = None
    data: Mapping[str, Any] = field(default_factory=dict)
    build: str = ""
    arch: str = ""


def classify(event: WindowsEvent, now_ms: int) -> Outcome:
    """What the rules make of one record: a Signal, Seen, Ignored or Rejected."""
    try:
        return _classify(event, now_ms)
    except FieldError as error:
        return Rejected(error.reason, error.detail)


def _classify(event: WindowsEvent, now_ms: int) -> Outcome:
    event_id = event_id_of(event.event_id)
    kind = RELEVANT_EVENTS.get((event.provider, event_id))
    if kind is None:
        if event.stamp is None or not event.device:
            return Ignored("no device or event time")
        return Seen(device=event.device, host=event.host, stamp=event.stamp)
    if not event.device:
        raise FieldError(RejectReason.BAD_DEVICE, "the record names no device")
    if event.stamp is None:
        raise FieldError(RejectReason.MISSING_FIELD, "event time")
    try:
        time_ms = parse_event_time(event.stamp, now_ms)
    except BadTimestamp as error:
        raise FieldError(RejectReason.BAD_TIMESTAMP, str(error)) from error
    base = Signal(
        device=event.device,
        kind=kind,
        time_ms=time_ms,
        host=event.host,
        record_key=_record_key(event.channel, event.record_id),
        build=event.build,
        arch=event.arch,
    )
    data = event.data
    if kind is SignalKind.DIRTY_BOOT:
        return _kernel_power(base, data)
    if kind is SignalKind.BUGCHECK:
        return replace(base, stop_code=_required(data, "param1", stopcodes.from_param1))
    if kind is SignalKind.BOOT_START:
        return replace(base, build=_running_build(data) or base.build)
    if kind is SignalKind.APP_CRASH:
        return replace(base, app=_app_name(data))
    if kind is SignalKind.RESTART:
        return _shutdown(base, data)
    if kind in (SignalKind.HELLO_FAILURE, SignalKind.HELLO_SUCCESS):
        return base
    return _install(base, data)


def checked_key(key: str) -> str:
    """A device key as given, refused when too long or carrying control characters."""
    if len(key) > MAX_DEVICE_KEY_LENGTH:
        raise FieldError(RejectReason.BAD_DEVICE, "device key longer than 255 characters")
    if CONTROL_CHARACTERS.search(key):
        raise FieldError(RejectReason.BAD_DEVICE, "device key contains control characters")
    return key


def text(value: object, limit: int = 255) -> str:
    """A short string field, or "" when it is not a string."""
    return value[:limit] if isinstance(value, str) else ""


def event_id_of(raw: object) -> int:
    """A numeric event id, as a number or a string of digits."""
    # bool is an int subclass: `true` is not event 1.
    if isinstance(raw, int) and not isinstance(raw, bool):
        event_id = raw
    elif isinstance(raw, str) and raw.strip().isdecimal():
        event_id = int(raw.strip())
    else:
        raise FieldError(RejectReason.BAD_EVENT_ID, "event id is not a number")
    if not 0 <= event_id <= 0xFFFF:
        raise FieldError(RejectReason.BAD_EVENT_ID, "event id outside 0-65535")
    return event_id


def _kernel_power(base: Signal, data: Mapping[str, Any]) -> Signal:
    code = _required(data, "BugcheckCode", stopcodes.from_decimal)
    if code == 0 and _held_power_button(data):
        return replace(base, kind=SignalKind.FORCED_OFF)
    return replace(base, stop_code=code)


def _held_power_button(data: Mapping[str, Any]) -> bool:
    long_press = str(data.get("LongPowerButtonPressDetected", "")).strip().lower() == "true"
    button_time = str(data.get("PowerButtonTimestamp", "0")).strip()
    return long_press or button_time not in ("", "0")


def _install(base: Signal, data: Mapping[str, Any]) -> Signal | Ignored:
    title = data.get("updateTitle")
    if not isinstance(title, str) or not title:
        raise FieldError(RejectReason.MISSING_FIELD, "event_data.updateTitle")
    match = _KB_PATTERN.search(title)
    if match is None:
        raise FieldError(RejectReason.BAD_VALUE, "updateTitle names no KB")
    kb = f"KB{match.group(1)}"
    lowered = title.lower()
    if kb in IGNORED_KBS or any(marker in lowered for marker in IGNORED_TITLE_MARKERS):
        return Ignored(f"{kb} is a definition or tool update")
    build = _BUILD_IN_TITLE.search(title)
    return replace(base, kb=kb, build=build.group(1) if build else base.build, source="winlogbeat")


def _app_name(data: Mapping[str, Any]) -> str:
    """`AppName` as a bounded, lower-cased executable name."""
    raw = data.get("AppName")
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(RejectReason.MISSING_FIELD, "event_data.AppName")
    name = CONTROL_CHARACTERS.sub("", raw.strip().replace("/", "\\").rsplit("\\", 1)[-1]).lower()
    if not name:
        raise FieldError(RejectReason.BAD_VALUE, "event_data.AppName is empty")
    return name[:MAX_APP_NAME_LENGTH]


def _shutdown(base: Signal, data: Mapping[str, Any]) -> Signal | Ignored:
    """User32 1074: a restart or a power off, from `param5`."""
    raw = data.get("param5")
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(RejectReason.MISSING_FIELD, "event_data.param5")
    kind = SHUTDOWN_KINDS.get(raw.strip().lower())
    if kind is None:
        return Ignored(f"shutdown kind {raw[:40]!r} is not one kbwatch reads")
    return replace(base, kind=kind)


def _record_key(channel: str, record_id: object) -> str:
    if isinstance(record_id, bool) or not isinstance(record_id, int | str):
        return ""
    digits = str(record_id).strip()
    if not digits.isdecimal() or len(digits) > 20:
        return ""
    return f"{channel}/{int(digits)}"[:300]


def _running_build(data: Mapping[str, Any]) -> str:
    major, revision = str(data.get("BuildVersion", "")), str(data.get("QfeVersion", ""))
    return f"{major}.{revision}" if major.isdecimal() and revision.isdecimal() else ""


def _required(data: Mapping[str, Any], name: str, parse: Callable[[str], int]) -> int:
    raw = data.get(name)
    # Some collectors write numbers where Winlogbeat writes strings.
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(RejectReason.MISSING_FIELD, f"event_data.{name}")
    try:
        return parse(raw)
    except ValueError as error:
        raise FieldError(RejectReason.BAD_VALUE, f"event_data.{name}: {error}") from error
