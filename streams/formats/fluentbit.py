"""Fluent Bit `winevtlog`: positional `StringInserts` and a local `TimeCreated` with offset.

The inserts carry no names, so the names are taken from each provider's
manifest for the records the rules read; other records need none.
"""

from __future__ import annotations

import re
from typing import Any

from streams.catalog import (
    APPLICATION_ERROR,
    KERNEL_GENERAL,
    KERNEL_POWER,
    USER32,
    WER_SYSTEM,
    WINDOWS_UPDATE,
)
from streams.formats.event import FieldError, WindowsEvent, checked_key, event_id_of, text
from streams.outcomes import RejectReason

# (provider, event id) -> the names of the inserts, in order (provider manifests).
INSERT_NAMES: dict[tuple[str, int], tuple[str, ...]] = {
    (KERNEL_POWER, 41): (
        "BugcheckCode",
        "BugcheckParameter1",
        "BugcheckParameter2",
        "BugcheckParameter3",
        "BugcheckParameter4",
        "SleepInProgress",
        "PowerButtonTimestamp",
        "BootAppStatus",
        "Checkpoint",
        "ConnectedStandbyInProgress",
        "SystemSleepTransitionsToOn",
        "CsEntryScenarioInstanceId",
        "BugcheckInfoFromEFI",
        "CheckpointStatus",
        "CsEntryScenarioInstanceIdV2",
        "LongPowerButtonPressDetected",
    ),
    (WER_SYSTEM, 1001): ("param1", "param2", "param3"),
    ("BugCheck", 1001): ("param1", "param2", "param3"),
    (KERNEL_GENERAL, 12): (
        "MajorVersion",
        "MinorVersion",
        "BuildVersion",
        "QfeVersion",
        "ServiceVersion",
        "BootMode",
        "StartTime",
    ),
    (WINDOWS_UPDATE, 19): ("updateTitle", "updateGuid", "updateRevisionNumber", "serviceGuid"),
    (APPLICATION_ERROR, 1000): (
        "AppName",
        "AppVersion",
        "AppTimeStamp",
        "ModuleName",
        "ModuleVersion",
        "ExceptionCode",
        "FaultingOffset",
        "ProcessId",
        "ProcessCreationTime",
        "AppPath",
        "ModulePath",
        "IntegratorReportId",
        "PackageFullName",
        "PackageRelativeAppId",
    ),
    (USER32, 1074): ("param1", "param2", "param3", "param4", "param5", "param6", "param7"),
}
_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?) ?([+-]\d{2}):?(\d{2})$")
MAX_INSERTS = 64


def fluentbit_event(document: dict[str, Any]) -> WindowsEvent:
    """The facts of one Fluent Bit `winevtlog` record."""
    provider = str(document.get("ProviderName"))
    computer = text(document.get("Computer")).strip()
    inserts = document.get("StringInserts")
    data: dict[str, Any] = {}
    if isinstance(inserts, list):
        if len(inserts) > MAX_INSERTS:
            raise FieldError(RejectReason.TOO_LARGE, f"more than {MAX_INSERTS} StringInserts")
        try:
            names = INSERT_NAMES.get((provider, event_id_of(document.get("EventID"))), ())
        except FieldError:
            names = ()
        for position, value in enumerate(inserts, start=1):
            name = names[position - 1] if position <= len(names) else f"param{position}"
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value) != "":
                data[name] = str(value)
    return WindowsEvent(
        provider=provider,
        event_id=document.get("EventID"),
        stamp=_rfc3339(document.get("TimeCreated")),
        device=checked_key(computer.lower()) if computer else "",
        host=computer,
        channel=text(document.get("Channel")),
        record_id=document.get("EventRecordID"),
        data=data,
    )


def _rfc3339(value: object) -> str | None:
    """`2025-04-09 09:41:12 +0200` -> `2025-04-09T09:41:12+02:00`."""
    if not isinstance(value, str):
        return None
    match = _TIME.match(value.strip())
    if match is None:
        return value  # let the shared parser say what is wrong with it
    day, clock, hours, minutes = match.groups()
    return f"{day}T{clock}{hours}:{minutes}"
