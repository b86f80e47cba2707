"""NXLog `im_msvistalog` + `to_json()`: flat records, local time without offset.

Every `event_data` field sits at the top level beside the system fields, and
`EventTime` is the Windows host's local time with no offset (NXLog CE), so
the zone comes from configuration (`KBWATCH_NXLOG_TIMEZONE`, UTC by default).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from streams.formats.event import FieldError, WindowsEvent, checked_key, text
from streams.outcomes import RejectReason

SYSTEM_FIELDS = frozenset(
    {"EventTime", "Hostname", "EventID", "SourceName", "ProviderGuid", "Channel", "RecordNumber", "Message"}
)


def nxlog_event(document: dict[str, Any], zone: ZoneInfo) -> WindowsEvent:
    """The facts of one NXLog JSON record."""
    hostname = text(document.get("Hostname")).strip()
    return WindowsEvent(
        provider=str(document.get("SourceName")),
        event_id=document.get("EventID"),
        stamp=local_to_rfc3339(document.get("EventTime"), zone),
        device=checked_key(hostname.lower()) if hostname else "",
        host=hostname,
        channel=text(document.get("Channel")),
        record_id=document.get("RecordNumber"),
        data={name: value for name, value in document.items() if name not in SYSTEM_FIELDS},
    )


def local_to_rfc3339(value: object, zone: ZoneInfo) -> str | None:
    """`2025-04-09 09:41:12` in `zone` -> RFC 3339; a time with an offset is kept."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip()[:40])
    except ValueError as error:
        raise FieldError(RejectReason.BAD_TIMESTAMP, f"EventTime {value[:40]!r} is not a time") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat()
