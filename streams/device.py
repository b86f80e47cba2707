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


@dataclass(frozen=True, slots=True, order=True)
class Marker:
    """A boot record kept for crash-boot grouping. Field order is the sort order."""

    time_ms: int
    kind: SignalKind
    stop_code: int
    record_key: str


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

    @property
    def firing(self) -> bool:
        return self.ends_ms == 0


@dataclass(slots=True)
class DeviceState:
    """Everything kept about one device; see `StateLimits` for its bounds."""

    device: str
    newest_ms: int = 0
    host: str = ""
    build: str = ""
    arch: str = ""
    markers: list[Marker] = field(default_factory=list)
    installs: list[Install] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)

    def firing(self) -> list[Episode]:
        return [episode for episode in self.episodes if episode.firing]

    def to_wire(self) -> bytes:
        return codec.dumps(
            {
                "d": self.device,
                "n": self.newest_ms,
                "h": self.host,
                "b": self.build,
                "a": self.arch,
                "m": [[m.time_ms, m.kind.value, m.stop_code, m.record_key] for m in self.markers],
                "i": [[i.time_ms, i.kb, i.build, i.source] for i in self.installs],
                "e": [_episode_to_wire(e) for e in self.episodes],
            }
        )

    @classmethod
    def from_wire(cls, payload: bytes) -> DeviceState:
        wire: dict[str, Any] = codec.loads(payload)
        return cls(
            device=wire["d"],
            newest_ms=wire["n"],
            host=wire["h"],
            build=wire["b"],
            arch=wire["a"],
            markers=[Marker(t, SignalKind(k), c, r) for t, k, c, r in wire["m"]],
            installs=[Install(t, kb, b, s) for t, kb, b, s in wire["i"]],
            episodes=[Episode(*values) for values in wire["e"]],
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
    ]
