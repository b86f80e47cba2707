"""The native update-install record (topic `update-installs`) -> `Signal`.

Contract: `schemas/update-install.schema.json`. `device` must be the same key
the Windows event records get (host.id, else the lower-cased host name).
"""

from __future__ import annotations

import re
from typing import Any

from streams.catalog import IGNORED_KBS
from streams.formats.event import FieldError, checked_key
from streams.outcomes import Ignored, Outcome, Rejected, RejectReason
from streams.signals import Signal, SignalKind
from streams.timeutil import BadTimestamp, parse_event_time

_KB = re.compile(r"^(?:KB)?(\d{6,8})$", re.IGNORECASE)
_BUILD = re.compile(r"^(?:10\.0\.)?(\d{5}\.\d{1,6})$")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_SHORT_TEXT = 64


def refused_device(device: str) -> Rejected | None:
    """Why an install record's device key cannot be used (the event records' own check), or None."""
    try:
        checked_key(device)
    except FieldError as error:
        return Rejected(error.reason, error.detail)
    return None


def kb_and_time(
    raw_kb: object, raw_time: object, now_ms: int, kb_field: str, time_field: str
) -> tuple[str, int] | Outcome:
    """The KB and the install's event time of any install format, or why the record is not one."""
    kb = kb_number(raw_kb)
    if kb is None:
        return Rejected(RejectReason.BAD_VALUE, f"{kb_field} is not like KB5055523")
    if kb in IGNORED_KBS:
        return Ignored(f"{kb} is a definition or tool update")
    try:
        return kb, parse_event_time(raw_time, now_ms)
    except BadTimestamp as error:
        return Rejected(RejectReason.BAD_TIMESTAMP, f"{time_field}: {error}")


def build_number(raw: str) -> str | None:
    """`26100.3775` or `10.0.26100.3775` -> `26100.3775`; None if not a build."""
    match = _BUILD.match(raw.strip())
    return match.group(1) if match else None


def kb_number(raw: object) -> str | None:
    """`KB5055523`, `kb5055523`, `5055523` or 5055523 -> `KB5055523`; None if not a KB."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    match = _KB.match(str(raw).strip())
    return f"KB{match.group(1)}" if match else None


def normalise_install(document: Any, now_ms: int) -> Outcome:
    """One decoded native install record -> INSTALL Signal, or why not."""
    if not isinstance(document, dict):
        return Rejected(RejectReason.NOT_OBJECT, f"top level is {type(document).__name__}")
    device = document.get("device")
    if not isinstance(device, str) or not device.strip():
        return Rejected(RejectReason.MISSING_FIELD, "device")
    refused = refused_device(device.strip())
    if refused is not None:
        return refused
    device = device.strip()
    checked = kb_and_time(document.get("kb"), document.get("installed_at"), now_ms, "kb", "installed_at")
    if not isinstance(checked, tuple):
        return checked
    kb, time_ms = checked
    optional: dict[str, str] = {}
    for name in ("build", "arch", "source"):
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            return Rejected(RejectReason.BAD_VALUE, f"{name} must be a string")
        optional[name] = _CONTROL_CHARACTERS.sub("", (value or "").strip())[:_SHORT_TEXT]
    build = build_number(optional["build"])
    if optional["build"] and build is None:
        return Rejected(RejectReason.BAD_VALUE, "build is not like 26100.3775")
    return Signal(
        device=device,
        kind=SignalKind.INSTALL,
        time_ms=time_ms,
        kb=kb,
        build=build or "",
        arch=optional["arch"],
        source=optional["source"] or "native",
    )
