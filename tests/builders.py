"""Small helpers to write test cases in the domain's words."""

from __future__ import annotations

from typing import Any

from streams import codec
from streams.catalog import Catalog
from streams.detector import apply
from streams.device import DeviceState
from streams.documents import Host
from streams.replay import replay
from streams.sieve import Sieve
from streams.signals import Signal, SignalKind
from streams.simulate import SimRecord
from streams.timeutil import MINUTE_MS, parse_event_time

DEVICE = "7fc9aebf-68ae-4168-baa8-827d10d93179"
HOST = Host(host_id=DEVICE, name="PC-00042", arch="arm64", build="26100.3775")
T0 = parse_event_time("2025-04-08T14:00:00Z", 2**62)  # KB5055523 install
FAR_FUTURE = 2**62


def minutes(count: float) -> int:
    return int(count * MINUTE_MS)


def install(at: int, kb: str = "KB5055523", device: str = DEVICE) -> Signal:
    return Signal(
        device=device,
        kind=SignalKind.INSTALL,
        time_ms=at,
        kb=kb,
        build="26100.3775",
        arch="arm64",
        source="test",
    )


def crash_boot_signals(at: int, record_id: int, code: int = 0x18B, device: str = DEVICE) -> list[Signal]:
    """The records of one crash boot: OS start, Kernel-Power 41, BugCheck 1001."""
    return [
        Signal(device, SignalKind.BOOT_START, at, host="PC-00042", record_key=f"System/{record_id}"),
        Signal(
            device, SignalKind.DIRTY_BOOT, at + 2000, record_key=f"System/{record_id + 1}", stop_code=code
        ),
        Signal(
            device, SignalKind.BUGCHECK, at + 20_000, record_key=f"System/{record_id + 2}", stop_code=code
        ),
    ]


def seen(at: int, device: str = DEVICE) -> Signal:
    return Signal(device, SignalKind.SEEN, at)


def run(signals: list[Signal], catalog: Catalog | None = None) -> tuple[DeviceState | None, list[Any]]:
    """Fold signals into one device's state; return the state and alert dicts."""
    catalog = catalog or Catalog()
    state: DeviceState | None = None
    alerts: list[Any] = []
    for signal in signals:
        result = apply(state, signal, catalog)
        state = result.state
        alerts.extend(alert.to_json() for alert in result.alerts)
    return state, alerts


def final_by_fingerprint(alerts: list[dict[str, Any]]) -> dict[str, tuple[str, str, str, str]]:
    """The last state of every alert: what a consumer keyed by fingerprint ends with."""
    final: dict[str, tuple[str, str, str, str]] = {}
    for alert in alerts:
        final[alert["fingerprint"]] = (
            alert["status"],
            alert["labels"]["kb"],
            alert["startsAt"],
            alert["endsAt"],
        )
    return final


def replayed_verdicts(stream: list[SimRecord]) -> dict[str, tuple[str, str, str, str]]:
    """What `kbwatch replay` ends with for the stream: what the live worker must end with too."""
    offline = replay(
        ((str(index), record.value) for index, record in enumerate(stream)),
        catalog=Catalog(),
        sieve=Sieve(1 << 20),
    )
    return final_by_fingerprint([alert.to_json() for alert in offline.alerts])


def line(document: dict[str, Any]) -> bytes:
    return codec.dumps(document)


def hello(at: int, record_id: int, ok: bool = False, device: str = DEVICE) -> Signal:
    kind = SignalKind.HELLO_SUCCESS if ok else SignalKind.HELLO_FAILURE
    return Signal(device, kind, at, record_key=f"Hello/{record_id}")


def app_crash(at: int, record_id: int, app: str = "robloxplayerbeta.exe", device: str = DEVICE) -> Signal:
    return Signal(device, SignalKind.APP_CRASH, at, record_key=f"Application/{record_id}", app=app)


def restart(at: int, record_id: int, kind: SignalKind = SignalKind.RESTART, device: str = DEVICE) -> Signal:
    return Signal(device, kind, at, record_key=f"System/{record_id}")


def tick(at: int) -> Signal:
    return Signal("", SignalKind.TICK, at)
