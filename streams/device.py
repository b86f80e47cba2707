"""Per-device state: what the rules remember about one device, and its wire form.

The state lives in a Faust table keyed by device (backed by a changelog topic)
and, in `kbwatch replay`, in a plain dict. It is bounded in the device's own
event time by `StateLimits`, never by the wall clock, so replay and live agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams import codec
from streams.signals import SignalKind

STATE_VERSION = 2


@dataclass(frozen=True, slots=True, order=True)
class Marker:
    """A record kept for a rule (boot, Hello). Field order is the sort order."""

    time_ms: int
    kind: SignalKind
    stop_code: int
    record_key: str


@dataclass(frozen=True, slots=True, order=True)
class AppCrash:
    """An Application Error 1000 of `app`."""

    time_ms: int
    app: str
    record_key: str


@dataclass(frozen=True, slots=True, order=True)
class Restart:
    """A planned restart (User32 1074) and the first time the device spoke after it.

    `back_ms` is the earliest event time of anything the device sent after the
    restart's grace period, 0 while nothing has come: a minimum over a set, so
    delivery order cannot change it.
    """

    time_ms: int
    record_key: str
    back_ms: int = 0


@dataclass(frozen=True, slots=True)
class Install:
    """A successful install of `kb` on this device at `time_ms`."""

    time_ms: int
    kb: str
    build: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert episode as last sent; labels are fixed when it first fires."""

    alertname: str
    fingerprint: str
    kb: str
    first_ms: int  # the first symptom of the episode
    starts_ms: int  # the record that completed the condition
    ends_ms: int  # 0 while firing
    host: str
    os_build: str
    arch: str
    stop_code: int
    subject: str = ""  # what inside the device: the app, for PostUpdateAppCrashLoop

    @property
    def firing(self) -> bool:
        return self.ends_ms == 0


@dataclass(frozen=True, slots=True)
class Reported:
    """What the device has told the fleet agent about one KB."""

    kb: str
    status: str  # installed | affected | recovered
    affected_ms: int = 0  # the start last reported as affected: a late record can move it earlier
    # The time of the last recovery or relapse told: the next one is never older, so
    # that the fleet agent can tell a status said again from a newer one.
    said_ms: int = 0


@dataclass(slots=True)
class DeviceState:
    """Everything kept about one device; see `StateLimits` for its bounds."""

    device: str
    newest_ms: int = 0
    host: str = ""
    build: str = ""
    arch: str = ""
    markers: list[Marker] = field(default_factory=list)  # boot records
    hello: list[Marker] = field(default_factory=list)
    app_crashes: list[AppCrash] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    installs: list[Install] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    reported: list[Reported] = field(default_factory=list)
    background_loops: list[int] = field(default_factory=list)  # first crash of each, reported
    exposure_epoch: int = -1  # last 72 h epoch reported as baseline exposure
    exposure_ms: int = 0  # event time of that epoch's exposure fact (0: none sent, or withdrawn)
    fleet_ms: int = 0  # the fleet clock as last told to this device
    partition: int = 0  # the signals partition the device's records arrive on

    def firing(self) -> list[Episode]:
        return [episode for episode in self.episodes if episode.firing]

    def reported_status(self, kb: str) -> str:
        return next((entry.status for entry in self.reported if entry.kb == kb), "")

    def to_wire(self) -> bytes:
        return codec.dumps(
            {
                "v": STATE_VERSION,
                "d": self.device,
                "n": self.newest_ms,
                "h": self.host,
                "b": self.build,
                "a": self.arch,
                "m": [[m.time_ms, m.kind.value, m.stop_code, m.record_key] for m in self.markers],
                "w": [[m.time_ms, m.kind.value, m.record_key] for m in self.hello],
                "c": [[c.time_ms, c.app, c.record_key] for c in self.app_crashes],
                "r": [[r.time_ms, r.record_key, r.back_ms] for r in self.restarts],
                "i": [[i.time_ms, i.kb, i.build, i.source] for i in self.installs],
                "e": [_episode_to_wire(e) for e in self.episodes],
                "f": [[entry.kb, entry.status, entry.affected_ms, entry.said_ms] for entry in self.reported],
                "g": self.background_loops,
                "x": self.exposure_epoch,
                "y": self.exposure_ms,
                "k": self.fleet_ms,
                "p": self.partition,
            }
        )

    @classmethod
    def from_wire(cls, payload: bytes) -> DeviceState:
        wire: dict[str, Any] = codec.loads(payload)
        if wire.get("v") != STATE_VERSION:
            raise ValueError(f"device state version {wire.get('v')!r}, expected {STATE_VERSION}")
        return cls(
            device=wire["d"],
            newest_ms=wire["n"],
            host=wire["h"],
            build=wire["b"],
            arch=wire["a"],
            markers=[Marker(t, SignalKind(k), c, r) for t, k, c, r in wire["m"]],
            hello=[Marker(t, SignalKind(k), 0, r) for t, k, r in wire["w"]],
            app_crashes=[AppCrash(t, app, r) for t, app, r in wire["c"]],
            restarts=[Restart(t, r, back) for t, r, back in wire["r"]],
            installs=[Install(t, kb, b, s) for t, kb, b, s in wire["i"]],
            episodes=[Episode(*values) for values in wire["e"]],
            reported=[Reported(*entry) for entry in wire["f"]],  # 2 fields before 0.5, 3 before 0.9.2
            background_loops=list(wire["g"]),
            exposure_epoch=wire["x"],
            exposure_ms=wire.get("y", 0),  # not kept before 0.8.5: nothing to withdraw
            fleet_ms=wire["k"],
            partition=wire["p"],
        )


def _episode_to_wire(episode: Episode) -> list[Any]:
    return [
        episode.alertname,
        episode.fingerprint,
        episode.kb,
        episode.first_ms,
        episode.starts_ms,
        episode.ends_ms,
        episode.host,
        episode.os_build,
        episode.arch,
        episode.stop_code,
        episode.subject,
    ]
