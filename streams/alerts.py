"""The alert contract: Alertmanager-shaped JSON objects on `kbwatch-alerts`.

Schema: `schemas/alert.schema.json`. One object per state change of an
episode, keyed by `fingerprint`, which is stable for the episode's life.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from streams import codec, stopcodes
from streams.catalog import KNOWN_ISSUES, BootLoopRule
from streams.device import Episode
from streams.timeutil import to_rfc3339

# Alertmanager's "not set" time, as its own API and webhooks write it.
UNSET_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Alert:
    """One state change of one episode."""

    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "fingerprint": self.fingerprint,
        }

    def to_wire(self) -> bytes:
        return codec.dumps(self.to_json())


def fingerprint(alertname: str, device: str, kb: str, sequence: int) -> str:
    """Stable id of an episode: the n-th episode of `alertname` for (device, kb)."""
    identity = "\x1f".join((alertname, device, kb, str(sequence))).encode()
    return hashlib.sha256(identity).hexdigest()[:16]


def boot_loop_alert(device: str, episode: Episode, rule: BootLoopRule) -> Alert:
    """Render an episode of `PostUpdateBootLoop` as an alert object."""
    labels = {
        "alertname": rule.alertname,
        "severity": rule.severity,
        "device": device,
        "host": episode.host,
        "kb": episode.kb,
        "os_build": episode.os_build,
        "arch": episode.arch,
        "stop_code": stopcodes.label(episode.stop_code),
    }
    summary = (
        f"{episode.host or device} is in a boot loop after {episode.kb} "
        f"({stopcodes.describe(episode.stop_code)})"
    )
    annotations = {
        "summary": summary,
        "description": _boot_loop_description(device, episode, rule),
        "runbook_url": rule.runbook_url,
    }
    return Alert(
        status="firing" if episode.firing else "resolved",
        labels=labels,
        annotations=annotations,
        starts_at=to_rfc3339(episode.starts_ms),
        ends_at=UNSET_TIME if episode.firing else to_rfc3339(episode.ends_ms),
        fingerprint=episode.fingerprint,
    )


def _boot_loop_description(device: str, episode: Episode, rule: BootLoopRule) -> str:
    window_minutes = rule.window_ms // 60_000
    parts = [
        f"Device {device} ({episode.host or 'host unknown'}, build {episode.os_build or 'unknown'}, "
        f"{episode.arch or 'architecture unknown'}) crashed on boot at least "
        f"{rule.min_crash_boots} times within {window_minutes} min, starting "
        f"{to_rfc3339(episode.first_ms)}, after installing {episode.kb}.",
    ]
    if episode.stop_code in stopcodes.SECURE_KERNEL_FAMILY:
        parts.append(
            f"Stop code {stopcodes.describe(episode.stop_code)} is the secure-kernel (VBS) family "
            "of the spring-2025 Windows 11 24H2 loops: the Known Issue Rollback is the fix, "
            "not a reinstall."
        )
    else:
        parts.append(f"Stop code {stopcodes.describe(episode.stop_code)}.")
    known = KNOWN_ISSUES.get(episode.kb)
    if known is not None:
        parts.append(f"Known issue of {known.kb} ({known.build}): {known.symptom}. {known.advice}")
        if known.kir_policy:
            parts.append(
                f"Group Policy: Computer Configuration > Administrative Templates > {known.kir_policy}."
            )
    else:
        parts.append(
            f"What to do: pause the deployment ring of {episode.kb}, check whether other devices "
            "on the same KB loop too (UpdateRegression), and apply Microsoft's Known Issue "
            "Rollback Group Policy if one is published; uninstall the update from WinRE otherwise."
        )
    parts.append(
        f"Resolves after {rule.stable_ms // 3_600_000} h of the device's own event time without a crash."
    )
    return " ".join(parts)
