"""Windows Update for Business reports: `UCClientUpdateStatus` rows as installs.

One row per device per update, exported from Log Analytics 24-36 h late, so
`UpdateInstalledTime` is the event time. The device is matched by Entra
(Azure AD) device id through an optional map file (`KBWATCH_WUFB_DEVICE_MAP`,
JSON `{"<AzureADDeviceId>": "<device key>"}`), else by the lower-cased
`DeviceName`, which is what Winlogbeat's key is without `host.id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.installs import build_number, kb_and_time, refused_device
from streams.outcomes import Ignored, Outcome, Rejected, RejectReason
from streams.signals import Signal, SignalKind


def wufb_install(row: dict[str, Any], now_ms: int, device_map: Mapping[str, str]) -> Outcome:
    """One `UCClientUpdateStatus` row -> an INSTALL signal, or why not."""
    installed_at = row.get("UpdateInstalledTime")
    if installed_at in (None, ""):
        return Ignored("the update is not installed on this device yet")
    entra_id = row.get("AzureADDeviceId")
    name = row.get("DeviceName")
    device = device_map.get(entra_id, "") if isinstance(entra_id, str) else ""
    if not device and isinstance(name, str):
        device = name.strip().lower()
    if not device:
        return Rejected(RejectReason.MISSING_FIELD, "DeviceName (or a mapped AzureADDeviceId)")
    refused = refused_device(device)
    if refused is not None:
        return refused
    checked = kb_and_time(
        row.get("TargetKBNumber"), installed_at, now_ms, "TargetKBNumber", "UpdateInstalledTime"
    )
    if not isinstance(checked, tuple):
        return checked
    kb, time_ms = checked
    build = row.get("TargetBuild")
    return Signal(
        device=device,
        kind=SignalKind.INSTALL,
        time_ms=time_ms,
        kb=kb,
        build=(build_number(build) if isinstance(build, str) else None) or "",
        source="wufb",
    )
