"""The alert contract: Alertmanager-shaped JSON objects on `kbwatch-alerts`.

Schema: `schemas/alert.schema.json`. One object per state change of an
episode, keyed by `fingerprint`, which is stable for the episode's life. The
text is written for the person paged at 3 a.m.: what broke, after which
update, and what to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from streams import codec, stopcodes
from streams.catalog import KNOWN_ISSUES, Catalog
from streams.device import Episode
from streams.timeutil import HOUR_MS, MINUTE_MS, to_rfc3339

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


def fingerprint(alertname: str, device: str, kb: str, sequence: int, subject: str = "") -> str:
    """Stable id of an episode: the n-th episode of `alertname` for (device, kb, subject)."""
    parts = [alertname, device, kb, str(sequence)] + ([subject] if subject else [])
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def device_alert(device: str, episode: Episode, catalog: Catalog) -> Alert:
    """Render a per-device episode as an alert object."""
    labels = {
        "alertname": episode.alertname,
        "severity": _severity(episode.alertname, catalog),
        "device": device,
        "host": episode.host,
        "kb": episode.kb,
        "os_build": episode.os_build,
        "arch": episode.arch,
    }
    summary, description, runbook = _text(device, episode, catalog)
    if episode.alertname == catalog.boot_loop.alertname:
        labels["stop_code"] = stopcodes.label(episode.stop_code)
    if episode.alertname == catalog.app_crash.alertname:
        labels["app"] = episode.subject
    return Alert(
        status="firing" if episode.firing else "resolved",
        labels=labels,
        annotations={"summary": summary, "description": description, "runbook_url": runbook},
        starts_at=to_rfc3339(episode.starts_ms),
        ends_at=UNSET_TIME if episode.firing else to_rfc3339(episode.ends_ms),
        fingerprint=episode.fingerprint,
    )


def _severity(alertname: str, catalog: Catalog) -> str:
    return next(rule.severity for rule in catalog.alert_rules() if rule.alertname == alertname)


def _text(device: str, episode: Episode, catalog: Catalog) -> tuple[str, str, str]:
    who = episode.host or device
    where = (
        f"Device {device} ({episode.host or 'host unknown'}, build {episode.os_build or 'unknown'}, "
        f"{episode.arch or 'architecture unknown'})"
    )
    since = to_rfc3339(episode.first_ms)
    if episode.alertname == catalog.boot_loop.alertname:
        rule = catalog.boot_loop
        summary = f"{who} is in a boot loop after {episode.kb} ({stopcodes.describe(episode.stop_code)})"
        body = (
            f"{where} crashed on boot at least {rule.min_crash_boots} times within "
            f"{rule.window_ms // MINUTE_MS} min, starting {since}, after installing {episode.kb}. "
            + _stop_code_advice(episode.stop_code)
            + f" Resolves after {rule.stable_ms // HOUR_MS} h of the device's own event time without a crash."
        )
        return summary, body + _kb_advice(episode.kb), catalog.runbook_url(episode.alertname)
    if episode.alertname == catalog.hello.alertname:
        hello = catalog.hello
        summary = f"Windows Hello keeps failing on {who} after {episode.kb}"
        body = (
            f"{where} logged at least {hello.min_failures} Windows Hello failures within "
            f"{hello.window_ms // HOUR_MS} h with no successful Hello sign-in between, starting {since}, "
            f'after installing {episode.kb}. Users likely see "your PIN isn\'t available" or face '
            "sign-in errors: have them sign in with a password; if the device was reset with "
            '"keep my files" under System Guard Secure Launch, re-provision Hello after the fix. '
            "Resolves at the next successful Hello sign-in."
        )
        return summary, body + _kb_advice(episode.kb), catalog.runbook_url(episode.alertname)
    if episode.alertname == catalog.app_crash.alertname:
        app = catalog.app_crash
        summary = f"{episode.subject} keeps crashing on {who} after {episode.kb}"
        body = (
            f"{where}: {episode.subject} crashed at least {app.min_crashes} times within "
            f"{app.window_ms // MINUTE_MS} min, starting {since}, after installing {episode.kb}. "
            "Check the vendor for a build of the app for this Windows build; on Arm64 devices "
            "the spring-2025 updates broke some apps at launch. "
            f"Resolves after {app.stable_ms // HOUR_MS} h of the device's own event time without a crash "
            "of this app."
        )
        return summary, body + _kb_advice(episode.kb), catalog.runbook_url(episode.alertname)
    silence = catalog.silence
    summary = f"{who} has been silent since it restarted for {episode.kb}"
    body = (
        f"{where} restarted at {since}, within {silence.restart_within_ms // HOUR_MS} h after installing "
        f"{episode.kb}, and has sent nothing for {silence.silence_ms // MINUTE_MS} min while the rest of "
        "the fleet kept reporting. A device that crashes before the event log starts writes nothing: "
        "treat it as a possible boot loop. Check it in person or through out-of-band management; "
        "have its BitLocker recovery key ready for WinRE. Resolves when the device speaks again."
    )
    return summary, body + _kb_advice(episode.kb), catalog.runbook_url(episode.alertname)


def _stop_code_advice(code: int) -> str:
    if code in stopcodes.SECURE_KERNEL_FAMILY:
        return (
            f"Stop code {stopcodes.describe(code)} is the secure-kernel (VBS) family of the spring-2025 "
            "Windows 11 24H2 loops: the Known Issue Rollback is the fix, not a reinstall."
        )
    return f"Stop code {stopcodes.describe(code)}."


def _kb_advice(kb: str) -> str:
    known = KNOWN_ISSUES.get(kb)
    if known is not None:
        advice = f" Known issue of {known.kb} ({known.build}): {known.symptom}. {known.advice}"
        if known.kir_policy:
            advice += (
                f" Group Policy: Computer Configuration > Administrative Templates > {known.kir_policy}."
            )
        return advice
    return (
        f" What to do: pause the deployment ring of {kb}, check whether other devices on the same KB "
        "are affected (UpdateRegression), and apply Microsoft's Known Issue Rollback Group Policy if "
        "one is published; uninstall the update from WinRE otherwise."
    )
