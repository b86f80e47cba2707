"""A simulated Windows 11 fleet living through the spring-2025 updates.

Reusable by the demo, the tests and the benchmarks: it yields Winlogbeat
documents (and some native install records) in delivery order, with everyday
noise dominating, and says which devices must alert and which are decoys.

Every device belongs to one update wave (KB5053598, KB5053656 or KB5055523)
and plays one role. Loopers crash on boot several times soon after the
install; decoys look similar but must not alert: a single crash, a person
holding the power button three times, crash records delivered three times,
a loop days after the update, crashes hours apart.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer

from streams import codec, documents
from streams.collectors import render
from streams.documents import Host
from streams.formats.detect import InputFormat
from streams.security import aiokafka_options
from streams.settings import Settings
from streams.sieve import Source
from streams.timeutil import HOUR_MS, MINUTE_MS, parse_event_time, to_rfc3339


@dataclass(frozen=True, slots=True)
class Wave:
    """One update rolled out to a share of the fleet."""

    kb: str
    day: str
    build_before: str
    build_after: str
    bad: bool  # a bad wave breaks devices; a benign one has a single unlucky device


WAVES: tuple[Wave, ...] = (
    Wave("KB5051987", "2025-02-11T14:00:00Z", "26100.2894", "26100.3194", bad=False),
    Wave("KB5053598", "2025-03-11T14:00:00Z", "26100.3194", "26100.3476", bad=True),
    Wave("KB5053656", "2025-03-27T14:00:00Z", "26100.3476", "26100.3624", bad=True),
    Wave("KB5055523", "2025-04-08T14:00:00Z", "26100.3624", "26100.3775", bad=True),
)
_SERVICES = ("Windows Update", "BITS", "Windows Defender Antivirus Service", "Print Spooler", "WinHTTP")
_CRASHING_APP = "RobloxPlayerBeta.exe"


class Role(StrEnum):
    """What a simulated device does after its update."""

    HEALTHY = "healthy"
    LOOPER = "looper"  # boot loop, then recovers (KIR) and keeps reporting
    STUCK_LOOPER = "stuck_looper"  # boot loop, then never reports again
    SILENT = "silent"  # restarts for the update and never writes another record
    HELLO_BROKEN = "hello_broken"  # Windows Hello fails until a fix lands hours later
    APP_CRASHER = "app_crasher"  # an app crashes on launch again and again
    SINGLE_CRASH = "single_crash"
    POWER_BUTTON = "power_button"
    DUPLICATED = "duplicated"  # two crash boots, every record delivered three times
    LATE_LOOP = "late_loop"  # a loop 5 days after the install
    SLOW_CRASHES = "slow_crashes"  # three crash boots, hours apart
    POWERED_OFF = "powered_off"  # shut down (not restarted) after the update, back hours later
    FACE_MISMATCH = "face_mismatch"  # faces that do not match, and failures between successes
    FEW_APP_CRASHES = "few_app_crashes"  # four crashes of an app: one short


# Which alert each role must raise (the KB is the device's wave).
EXPECTED_ALERTS: dict[Role, str] = {
    Role.LOOPER: "PostUpdateBootLoop",
    Role.STUCK_LOOPER: "PostUpdateBootLoop",
    Role.SILENT: "DeviceSilentAfterUpdate",
    Role.HELLO_BROKEN: "PostUpdateHelloFailure",
    Role.APP_CRASHER: "PostUpdateAppCrashLoop",
}
AFFECTING_ROLES = frozenset({Role.LOOPER, Role.STUCK_LOOPER, Role.SILENT})
DECOY_ROLES = frozenset(
    {
        Role.SINGLE_CRASH,
        Role.POWER_BUTTON,
        Role.DUPLICATED,
        Role.LATE_LOOP,
        Role.SLOW_CRASHES,
        Role.POWERED_OFF,
        Role.FACE_MISMATCH,
        Role.FEW_APP_CRASHES,
    }
)


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """Size and mix of the simulated fleet."""

    devices: int = 300
    seed: int = 2025
    noise_per_hour: float = 4.0  # everyday records per device per hour
    hours_before: int = 6  # noise before each device's install
    hours_after: int = 14  # noise after it (past the 6 h that resolve an alert)
    loop_share: float = 0.08  # in a bad wave
    stuck_share: float = 0.02
    silent_share: float = 0.04
    hello_share: float = 0.03
    app_share: float = 0.03
    decoy_share: float = 0.02  # for each decoy role, in every wave
    arm64_share: float = 0.15
    native_install_share: float = 0.3  # installs reported on update-installs, not event 19
    max_delivery_jitter_ms: int = 90_000  # records of a device arrive this much out of order
    collector: InputFormat = InputFormat.WINLOGBEAT  # how the event records are shipped
    # Keyed by device (as Winlogbeat's `output.kafka.key: '%{[host.id]}'` does): what
    # several workers need to see each device's records in one partition, in order.
    keyed: bool = False
    zone: str = "Europe/Berlin"  # the devices' local time, for collectors that write it


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One message to produce: its event time, topic kind, key and value."""

    time_ms: int
    source: Source
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class Expectation:
    """Ground truth: which alerts each device must raise, the decoys, the bad KBs."""

    loops: dict[str, str] = field(default_factory=dict)  # device -> KB of its boot loop
    alerts: dict[str, tuple[str, str]] = field(default_factory=dict)  # device -> (alertname, KB)
    decoys: dict[str, Role] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    affected: dict[str, int] = field(default_factory=dict)  # KB -> devices looping or silent
    installed: dict[str, int] = field(default_factory=dict)  # KB -> devices that installed it
    bad_kbs: frozenset[str] = frozenset(wave.kb for wave in WAVES if wave.bad)


class _Device:
    def __init__(self, host: Host, role: Role, wave: Wave, rng: random.Random, key: str) -> None:
        self.host = host
        self.key = key
        self.role = role
        self.wave = wave
        self.kb = wave.kb
        self.rng = rng
        self.record_id = rng.randrange(10_000, 900_000)
        self.install_ms = parse_event_time(wave.day, 2**62) + rng.randrange(0, 10 * HOUR_MS)
        self.records: list[tuple[int, dict[str, Any], Source]] = []

    def next_id(self) -> int:
        self.record_id += 1
        return self.record_id

    def add(self, time_ms: int, document: dict[str, Any], source: Source = Source.WINLOGBEAT) -> None:
        self.records.append((time_ms, document, source))


def spring_2025(plan: FleetPlan) -> tuple[list[SimRecord], Expectation]:
    """The whole fleet's stream in delivery order, and its ground truth."""
    rng = random.Random(plan.seed)
    expectation = Expectation()
    records: list[tuple[int, int, SimRecord]] = []
    benign_looper_placed = False
    for number in range(plan.devices):
        wave = WAVES[number % len(WAVES)]
        role = _pick_role(plan, wave, rng)
        if not wave.bad and not benign_looper_placed:
            role, benign_looper_placed = Role.LOOPER, True  # the one unlucky device of a good update
        device = _make_device(number, role, wave, plan, rng)
        _live(device, plan)
        _expect(expectation, device)
        for time_ms, document, source in device.records:
            value = _encode(document, source, plan)
            # Delivery order: event time plus a per-record jitter, so one
            # device's records arrive out of order as unkeyed messages do.
            delivered = time_ms + rng.randrange(0, plan.max_delivery_jitter_ms + 1)
            key = device.key.encode() if plan.keyed else None
            records.append((delivered, len(records), SimRecord(time_ms, source, key, value)))
    records.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in records], expectation


def _encode(document: dict[str, Any], source: Source, plan: FleetPlan) -> bytes:
    if source is Source.INSTALLS or plan.collector is InputFormat.WINLOGBEAT:
        return codec.dumps(document)
    rendered = render(
        document, plan.collector, ZoneInfo(plan.zone), shape=document["winlog"]["record_id"] % 3
    )
    return rendered if isinstance(rendered, bytes) else codec.dumps(rendered)


# Collectors whose messages are not text: they go to a topic, never into an NDJSON file.
BINARY_COLLECTORS = frozenset({InputFormat.OTLP_PROTO})


class BinaryCollectorError(ValueError):
    """An NDJSON file was asked of a collector whose messages are binary."""


def device_key_for(host: Host, collector: InputFormat) -> str:
    """The key the product gives this host's records when `collector` ships them."""
    if collector in (InputFormat.WINLOGBEAT, InputFormat.OTLP_JSON, InputFormat.OTLP_PROTO):
        return host.host_id
    return host.fqdn.lower()


def _expect(expectation: Expectation, device: _Device) -> None:
    key = device.key
    expectation.roles[key] = device.role
    expectation.installed[device.kb] = expectation.installed.get(device.kb, 0) + 1
    alertname = EXPECTED_ALERTS.get(device.role)
    if alertname is not None:
        expectation.alerts[key] = (alertname, device.kb)
    if device.role in (Role.LOOPER, Role.STUCK_LOOPER):
        expectation.loops[key] = device.kb
    if device.role in AFFECTING_ROLES:
        expectation.affected[device.kb] = expectation.affected.get(device.kb, 0) + 1
    if device.role in DECOY_ROLES:
        expectation.decoys[key] = device.role


def _make_device(number: int, role: Role, wave: Wave, plan: FleetPlan, rng: random.Random) -> _Device:
    arm64 = role is Role.APP_CRASHER or rng.random() < plan.arm64_share
    host = Host(
        host_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        name=f"PC-{number:05d}",
        arch="arm64" if arm64 else "x86_64",
        build=wave.build_before,
    )
    return _Device(host, role, wave, rng, device_key_for(host, plan.collector))


def _pick_role(plan: FleetPlan, wave: Wave, rng: random.Random) -> Role:
    draw = rng.random()
    shares: list[tuple[float, Role]] = [(plan.decoy_share, role) for role in sorted(DECOY_ROLES)]
    if wave.bad:
        shares += [
            (plan.loop_share, Role.LOOPER),
            (plan.stuck_share, Role.STUCK_LOOPER),
            (plan.silent_share, Role.SILENT),
            (plan.hello_share, Role.HELLO_BROKEN),
            (plan.app_share, Role.APP_CRASHER),
        ]
    for share, role in shares:
        if draw < share:
            return role
        draw -= share
    return Role.HEALTHY


def _live(device: _Device, plan: FleetPlan) -> None:
    install = device.install_ms
    stops_at = install + plan.hours_after * HOUR_MS
    pause: tuple[int, int] | None = None
    _install(device, install, plan)
    restart = install + device.rng.randrange(2, 20) * MINUTE_MS
    role = device.role
    _planned_shutdown(device, restart, "power off" if role is Role.POWERED_OFF else "restart")
    device.host = _with_build(device.host, device.wave.build_after)
    if role is Role.SILENT:
        device.records = [record for record in device.records if record[0] <= restart + 10_000]
        return
    back = restart + (3 * HOUR_MS if role is Role.POWERED_OFF else 90_000)
    _boot(device, back)
    if role is Role.POWERED_OFF:
        pause = (restart, back)
    if role in (Role.LOOPER, Role.STUCK_LOOPER):
        last = _crash_series(device, back + MINUTE_MS, count=device.rng.randrange(4, 9), gap_s=(35, 240))
        if role is Role.STUCK_LOOPER:
            stops_at = last + MINUTE_MS
        else:
            _boot(device, last + 3 * MINUTE_MS)
    elif role is Role.SINGLE_CRASH:
        _crash_series(device, back + 2 * HOUR_MS, count=1, gap_s=(60, 60))
    elif role is Role.POWER_BUTTON:
        _power_button_series(device, back + HOUR_MS, count=3)
    elif role is Role.DUPLICATED:
        first = len(device.records)
        _crash_series(device, back + 30 * MINUTE_MS, count=2, gap_s=(60, 120))
        device.records.extend(device.records[first:] * 2)
    elif role is Role.LATE_LOOP:
        _crash_series(device, install + 120 * HOUR_MS, count=5, gap_s=(40, 90))
        stops_at = max(stops_at, install + 121 * HOUR_MS)
    elif role is Role.SLOW_CRASHES:
        for hour in (1, 3, 5):
            _crash_series(device, back + hour * HOUR_MS, count=1, gap_s=(60, 60))
    elif role is Role.HELLO_BROKEN:
        for minute in (5, 40, 95, 180):
            at = back + minute * MINUTE_MS
            device.add(at, documents.hello_event(device.host, at, device.next_id(), 7002, error="0x80090016"))
        fixed = back + 9 * HOUR_MS
        device.add(fixed, documents.hello_event(device.host, fixed, device.next_id(), 8002))
    elif role is Role.FACE_MISMATCH:
        for minute, event_id in (
            (5, 1002),
            (6, 1002),
            (7, 1002),
            (30, 7002),
            (31, 7002),
            (32, 1001),
            (60, 7002),
        ):
            at = back + minute * MINUTE_MS
            device.add(at, documents.hello_event(device.host, at, device.next_id(), event_id))
    elif role in (Role.APP_CRASHER, Role.FEW_APP_CRASHES):
        count = 6 if role is Role.APP_CRASHER else 4
        for index in range(count):
            at = back + 4 * MINUTE_MS + index * device.rng.randrange(40, 150) * 1000
            device.add(at, documents.application_1000(device.host, at, device.next_id(), _CRASHING_APP))
    _noise(device, install - plan.hours_before * HOUR_MS, stops_at, plan, pause)


def _install(device: _Device, install_ms: int, plan: FleetPlan) -> None:
    if device.rng.random() < plan.native_install_share:
        record = {
            "device": device.key,
            "kb": device.kb,
            "installed_at": to_rfc3339(install_ms),
            "build": device.wave.build_after,
            "arch": device.host.arch,
            "source": "intune",
        }
        device.add(install_ms, record, Source.INSTALLS)
    else:
        device.add(
            install_ms,
            documents.update_installed_19(
                device.host, install_ms, device.next_id(), device.kb, build=device.wave.build_after
            ),
        )
    # Defender's daily definition update lands after the CU: it must never take the blame.
    defender_ms = install_ms + 40 * MINUTE_MS
    title = "Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.427.115.0)"
    device.add(
        defender_ms,
        documents.update_installed_19(device.host, defender_ms, device.next_id(), "KB2267602", title),
    )


def _boot(device: _Device, time_ms: int) -> None:
    """OS start, then the services starting, as every boot writes them."""
    device.add(time_ms, documents.kernel_general_12(device.host, time_ms, device.next_id()))
    for offset_s, service in ((20, "Windows Update"), (45, "BITS"), (300, "WinHTTP")):
        at = time_ms + offset_s * 1000
        device.add(at, documents.service_control_7036(device.host, at, device.next_id(), service, "running"))


def _crash_series(device: _Device, start_ms: int, *, count: int, gap_s: tuple[int, int]) -> int:
    """`count` crash boots, each: OS start, Kernel-Power 41, EventLog 6008, maybe BugCheck 1001."""
    time_ms = start_ms
    for index in range(count):
        if index:
            time_ms += device.rng.randrange(gap_s[0], gap_s[1] + 1) * 1000
        host = device.host
        device.add(time_ms, documents.kernel_general_12(host, time_ms, device.next_id()))
        device.add(time_ms + 2000, documents.kernel_power_41(host, time_ms + 2000, device.next_id(), 0x18B))
        device.add(time_ms + 2500, documents.eventlog_6008(host, time_ms + 2500, device.next_id()))
        if device.rng.random() < 0.7:
            later = time_ms + device.rng.randrange(10, 30) * 1000
            device.add(later, documents.bugcheck_1001(host, later, device.next_id(), 0x18B))
    return time_ms


def _power_button_series(device: _Device, start_ms: int, *, count: int) -> None:
    for index in range(count):
        time_ms = start_ms + index * 15 * MINUTE_MS
        host = device.host
        device.add(time_ms, documents.kernel_general_12(host, time_ms, device.next_id()))
        device.add(
            time_ms + 2000,
            documents.kernel_power_41(host, time_ms + 2000, device.next_id(), 0, power_button=True),
        )
        device.add(time_ms + 2500, documents.eventlog_6008(host, time_ms + 2500, device.next_id()))


def _planned_shutdown(device: _Device, time_ms: int, kind: str) -> None:
    """User32 1074 from the servicing stack, then the clean stop records."""
    device.add(time_ms, documents.user32_1074(device.host, time_ms, device.next_id(), kind))
    device.add(time_ms + 5000, documents.kernel_general_13(device.host, time_ms + 5000, device.next_id()))


def _noise(
    device: _Device, start_ms: int, end_ms: int, plan: FleetPlan, pause: tuple[int, int] | None = None
) -> None:
    if plan.noise_per_hour <= 0:
        return
    mean_gap_ms = HOUR_MS / plan.noise_per_hour
    time_ms = start_ms
    while True:
        time_ms += int(device.rng.expovariate(1.0) * mean_gap_ms) + 1
        if time_ms >= end_ms:
            return
        if pause is not None and pause[0] <= time_ms <= pause[1]:
            continue
        if device.rng.random() < 0.5:
            service = device.rng.choice(_SERVICES)
            state = device.rng.choice(("running", "stopped"))
            device.add(
                time_ms,
                documents.service_control_7036(device.host, time_ms, device.next_id(), service, state),
            )
        else:
            device.add(time_ms, documents.security_4624(device.host, time_ms, device.next_id(), "alice"))


def _with_build(host: Host, build: str) -> Host:
    return Host(host.host_id, host.name, host.domain, host.arch, build)


def write_fleet(plan: FleetPlan, path: str) -> int:
    """Write the simulated stream as NDJSON (event and install records mixed)."""
    if plan.collector in BINARY_COLLECTORS:
        raise BinaryCollectorError(
            f"{plan.collector} messages are binary and NDJSON cannot hold them; "
            "produce them to the broker (leave out --output)"
        )
    stream, _ = spring_2025(plan)
    with open(path, "wb") as output:
        for record in stream:
            output.write(record.value + b"\n")
    return len(stream)


async def produce_fleet(plan: FleetPlan, settings: Settings, stream: list[SimRecord] | None = None) -> int:
    """Produce the simulated stream into the broker's input topics (unkeyed unless the plan says)."""
    records = stream if stream is not None else spring_2025(plan)[0]
    topics = {Source.WINLOGBEAT: settings.events_topic, Source.INSTALLS: settings.installs_topic}
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers(), linger_ms=20, acks="all", **aiokafka_options(settings)
    )
    await producer.start()
    try:
        for record in records:
            await producer.send(topics[record.source], value=record.value, key=record.key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(records)
