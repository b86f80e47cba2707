"""Raw Windows event XML (`<Event xmlns=...>`), as OpenTelemetry's `raw: true` ships it."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from streams.formats.event import FieldError, WindowsEvent, checked_key
from streams.outcomes import RejectReason

_NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"


def xml_event(payload: bytes) -> WindowsEvent:
    """The facts of one rendered or raw event XML document."""
    if b"<!DOCTYPE" in payload or b"<!ENTITY" in payload:
        # Entities are how XML is made to explode; Windows never writes them.
        raise FieldError(RejectReason.BAD_VALUE, "XML with a DOCTYPE or ENTITY")
    try:
        root = ElementTree.fromstring(payload)
    except ElementTree.ParseError as error:
        raise FieldError(RejectReason.NOT_JSON, f"neither JSON nor well-formed XML: {error}") from error
    system = root.find(f"{_NS}System")
    if root.tag != f"{_NS}Event" or system is None:
        raise FieldError(RejectReason.NOT_WINLOGBEAT, "XML is not a Windows <Event>")
    provider = system.find(f"{_NS}Provider")
    created = system.find(f"{_NS}TimeCreated")
    computer = (system.findtext(f"{_NS}Computer") or "").strip()
    data: dict[str, str] = {}
    event_data = root.find(f"{_NS}EventData")
    if event_data is not None:
        for position, item in enumerate(event_data.findall(f"{_NS}Data"), start=1):
            data[item.get("Name") or f"param{position}"] = (item.text or "").strip()
    return WindowsEvent(
        provider=provider.get("Name", "") if provider is not None else "",
        event_id=(system.findtext(f"{_NS}EventID") or "").strip(),
        stamp=created.get("SystemTime") if created is not None else None,
        device=checked_key(computer.lower()) if computer else "",
        host=computer[:255],
        channel=(system.findtext(f"{_NS}Channel") or "").strip()[:255],
        record_id=(system.findtext(f"{_NS}EventRecordID") or "").strip(),
        data={name: value for name, value in data.items() if value},
    )
