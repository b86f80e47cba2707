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
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaProducer

from streams import codec, documents
from streams.documents import Host
from streams.settings import Settings
from streams.sieve import Source
from streams.timeutil import HOUR_MS, MINUTE_MS, parse_event_time, to_rfc3339

WAVES: tuple[tuple[str, str, str, str], ...] = (
    # (kb, install day, build before, build after)
    ("KB5053598", "2025-03-11T14:00:00Z", "26100.3194", "26100.3476"),
    ("KB5053656", "2025-03-27T14:00:00Z", "26100.3476", "26100.3624"),
    ("KB5055523", "2025-04-08T14:00:00Z", "26100.3624", "26100.3775"),
)
_SERVICES = ("Windows Update", "BITS", "Windows Defender Antivirus Service", "Print Spooler", "WinHTTP")


class Role(StrEnum):
    """What a simulated device does after its update."""

    HEALTHY = "healthy"
    LOOPER = "looper"  # boot loop, then recovers (KIR) and keeps reporting
    STUCK_LOOPER = "stuck_looper"  # boot loop, then never reports again
    SINGLE_CRASH = "single_crash"
    POWER_BUTTON = "power_button"
    DUPLICATED = "duplicated"  # two crash boots, every record delivered three times
    LATE_LOOP = "late_loop"  # a loop 5 days after the install
    SLOW_CRASHES = "slow_crashes"  # three crash boots, hours apart


ALERTING_ROLES = frozenset({Role.LOOPER, Role.STUCK_LOOPER})


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """Size and mix of the simulated fleet."""

    devices: int = 300
    seed: int = 2025
    noise_per_hour: float = 4.0  # everyday records per device per hour
    hours_before: int = 6  # noise before each device's install
    hours_after: int = 14  # noise after it (past the 6 h that resolve an alert)
    loop_share: float = 0.06
    stuck_share: float = 0.02
    decoy_share: float = 0.03  # for each decoy role
    arm64_share: float = 0.15
    native_install_share: float = 0.3  # installs reported on update-installs, not event 19
    max_delivery_jitter_ms: int = 90_000  # records of a device arrive this much out of order


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One message to produce: its event time, topic kind, key and value."""

    time_ms: int
    source: Source
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class Expectation:
    """Ground truth: who must alert (device -> KB) and the decoys by role."""

    loops: dict[str, str] = field(default_factory=dict)
    decoys: dict[str, Role] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)


class _Device:
    def __init__(self, host: Host, role: Role, wave: tuple[str, str, str, str], rng: random.Random) -> None:
        self.host = host
        self.role = role
        self.kb, install_day, self.build_before, self.build_after = wave
        self.rng = rng
        self.record_id = rng.randrange(10_000, 900_000)
        self.install_ms = parse_event_time(install_day, 2**62) + rng.randrange(0, 10 * HOUR_MS)
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
    for number in range(plan.devices):
        device = _make_device(number, plan, rng)
        _live(device, plan)
        key = device.host.host_id
        expectation.roles[key] = device.role
        if device.role in ALERTING_ROLES:
            expectation.loops[key] = device.kb
        elif device.role is not Role.HEALTHY:
            expectation.decoys[key] = device.role
        for time_ms, document, source in device.records:
            value = codec.dumps(document)
            # Delivery order: event time plus a per-record jitter, so one
            # device's records arrive out of order as unkeyed messages do.
            delivered = time_ms + rng.randrange(0, plan.max_delivery_jitter_ms + 1)
            records.append((delivered, len(records), SimRecord(time_ms, source, None, value)))
    records.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in records], expectation


def iter_documents(plan: FleetPlan) -> Iterator[dict[str, Any]]:
    """The simulated stream as decoded documents (for files and benchmarks)."""
    stream, _ = spring_2025(plan)
    for record in stream:
        yield codec.loads(record.value)


def _make_device(number: int, plan: FleetPlan, rng: random.Random) -> _Device:
    role = _pick_role(plan, rng)
    wave = WAVES[number % len(WAVES)]
    host = Host(
        host_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        name=f"PC-{number:05d}",
        arch="arm64" if rng.random() < plan.arm64_share else "x86_64",
        build=wave[2],
    )
    return _Device(host, role, wave, rng)


def _pick_role(plan: FleetPlan, rng: random.Random) -> Role:
    draw = rng.random()
    thresholds = [(plan.loop_share, Role.LOOPER), (plan.stuck_share, Role.STUCK_LOOPER)]
    thresholds += [
        (plan.decoy_share, role)
        for role in (
            Role.SINGLE_CRASH,
            Role.POWER_BUTTON,
            Role.DUPLICATED,
            Role.LATE_LOOP,
            Role.SLOW_CRASHES,
        )
    ]
    for share, role in thresholds:
        if draw < share:
            return role
        draw -= share
    return Role.HEALTHY


def _live(device: _Device, plan: FleetPlan) -> None:
    install = device.install_ms
    stops_at = install + plan.hours_after * HOUR_MS
    _install(device, install, plan)
    restart = install + device.rng.randrange(2, 20) * MINUTE_MS
    device.host = _with_build(device.host, device.build_after)
    _boot(device, restart)
    role = device.role
    if role in ALERTING_ROLES:
        last = _crash_series(device, restart + MINUTE_MS, count=device.rng.randrange(4, 9), gap_s=(35, 240))
        if role is Role.STUCK_LOOPER:
            stops_at = last + MINUTE_MS
        else:
            _boot(device, last + 3 * MINUTE_MS)
    elif role is Role.SINGLE_CRASH:
        _crash_series(device, restart + 2 * HOUR_MS, count=1, gap_s=(60, 60))
    elif role is Role.POWER_BUTTON:
        _power_button_series(device, restart + HOUR_MS, count=3)
    elif role is Role.DUPLICATED:
        first = len(device.records)
        _crash_series(device, restart + 30 * MINUTE_MS, count=2, gap_s=(60, 120))
        device.records.extend(device.records[first:] * 2)
    elif role is Role.LATE_LOOP:
        _crash_series(device, install + 120 * HOUR_MS, count=5, gap_s=(40, 90))
        stops_at = max(stops_at, install + 121 * HOUR_MS)
    elif role is Role.SLOW_CRASHES:
        for hour in (1, 3, 5):
            _crash_series(device, restart + hour * HOUR_MS, count=1, gap_s=(60, 60))
    _noise(device, install - plan.hours_before * HOUR_MS, stops_at, plan)


def _install(device: _Device, install_ms: int, plan: FleetPlan) -> None:
    if device.rng.random() < plan.native_install_share:
        record = {
            "device": device.host.host_id,
            "kb": device.kb,
            "installed_at": to_rfc3339(install_ms),
            "build": device.build_after,
            "arch": device.host.arch,
            "source": "intune",
        }
        device.add(install_ms, record, Source.INSTALLS)
    else:
        device.add(
            install_ms,
            documents.update_installed_19(
                device.host, install_ms, device.next_id(), device.kb, build=device.build_after
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
    device.add(time_ms, documents.kernel_general_12(device.host, time_ms, device.next_id()))


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


def _noise(device: _Device, start_ms: int, end_ms: int, plan: FleetPlan) -> None:
    if plan.noise_per_hour <= 0:
        return
    mean_gap_ms = HOUR_MS / plan.noise_per_hour
    time_ms = start_ms
    while True:
        time_ms += int(device.rng.expovariate(1.0) * mean_gap_ms) + 1
        if time_ms >= end_ms:
            return
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
    """Write the simulated stream as NDJSON (Winlogbeat and install records mixed)."""
    stream, _ = spring_2025(plan)
    with open(path, "wb") as output:
        for record in stream:
            output.write(record.value + b"\n")
    return len(stream)


async def produce_fleet(plan: FleetPlan, settings: Settings, stream: list[SimRecord] | None = None) -> int:
    """Produce the simulated stream into the broker's input topics, unkeyed as Winlogbeat does."""
    records = stream if stream is not None else spring_2025(plan)[0]
    topics = {Source.WINLOGBEAT: settings.events_topic, Source.INSTALLS: settings.installs_topic}
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers(), linger_ms=20, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send(topics[record.source], value=record.value, key=record.key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(records)
