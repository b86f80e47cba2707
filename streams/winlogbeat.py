"""Winlogbeat 7.x/8.x ECS documents -> `WindowsEvent`s.

Traps handled here (domain.md §6): `winlog.event_id` is a string since 7.13 and
a number before; `@timestamp` can be missing (then `winlog.time_created`);
every `event_data` value is a string and empty ones are dropped.
"""

from __future__ import annotations

from typing import Any

from streams.formats.event import FieldError, WindowsEvent, checked_key, classify, text
from streams.outcomes import Outcome, Rejected, RejectReason


def normalise(document: Any, now_ms: int) -> Outcome:
    """One decoded Winlogbeat document -> Signal, Seen, Ignored or Rejected."""
    if not isinstance(document, dict):
        return Rejected(RejectReason.NOT_OBJECT, f"top level is {type(document).__name__}")
    try:
        return classify(to_event(document), now_ms)
    except FieldError as error:
        return Rejected(error.reason, error.detail)


def to_event(document: dict[str, Any]) -> WindowsEvent:
    """The facts of a Winlogbeat document."""
    winlog = document.get("winlog")
    if not isinstance(winlog, dict):
        raise FieldError(RejectReason.NOT_WINLOGBEAT, "no winlog object")
    host = document.get("host")
    host = host if isinstance(host, dict) else {}
    os_info = host.get("os")
    event_data = winlog.get("event_data")
    return WindowsEvent(
        provider=str(winlog.get("provider_name")),
        event_id=winlog.get("event_id"),
        stamp=_stamp(document, winlog),
        device=device_key(document, winlog),
        host=text(host.get("name")) or text(winlog.get("computer_name")),
        channel=text(winlog.get("channel")),
        record_id=winlog.get("record_id"),
        data=event_data if isinstance(event_data, dict) else {},
        build=text(os_info.get("build"), 32) if isinstance(os_info, dict) else "",
        arch=text(host.get("architecture"), 64),
    )


def device_key(document: dict[str, Any], winlog: dict[str, Any]) -> str:
    """`host.id`, else lower-cased `host.name`, else lower-cased `winlog.computer_name`.

    Returns "" when the document names no device at all; raises on a hostile one.
    """
    host = document.get("host")
    if isinstance(host, dict):
        return device_key_of(host.get("id"), host.get("name"), winlog.get("computer_name"))
    return device_key_of(None, None, winlog.get("computer_name"))


def device_key_of(host_id: object, host_name: object, computer_name: object) -> str:
    """`device_key` from the three fields as found (any type): the sieve's fast path reads them itself."""
    if isinstance(host_id, str) and host_id.strip():
        return checked_key(host_id.strip())
    if isinstance(host_name, str) and host_name.strip():
        return checked_key(host_name.strip().lower())
    if isinstance(computer_name, str) and computer_name.strip():
        return checked_key(computer_name.strip().lower())
    return ""


def _stamp(document: dict[str, Any], winlog: dict[str, Any]) -> str | None:
    stamp = document.get("@timestamp")
    if isinstance(stamp, str):
        return stamp
    created = winlog.get("time_created")
    return created if isinstance(created, str) else None
