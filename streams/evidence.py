"""Evidence: what device agents tell the fleet agent, once per fact.

Sent on `kbwatch-evidence` (one partition: KBs are few and the fleet verdict
needs the baseline beside every KB), keyed by KB (`_baseline` for baseline
facts). Contract of the topic: `schemas/evidence.schema.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from streams import codec

BASELINE_KEY = "_baseline"


class EvidenceKind(StrEnum):
    """One fact about one device and one KB (or the baseline)."""

    INSTALLED = "installed"  # the device installed the KB
    AFFECTED = "affected"  # it then had a boot loop or went silent
    RECOVERED = "recovered"  # every such alert of it for the KB resolved
    RELAPSED = "relapsed"  # affected again after recovering
    EXPOSURE = "exposure"  # a device-window of 72 h with no install before it (baseline)
    BACKGROUND_LOOP = "background_loop"  # a boot loop with no install before it (baseline)


@dataclass(frozen=True, slots=True)
class Evidence:
    """A fact for the fleet agent; `time_ms` is its event time."""

    kind: EvidenceKind
    kb: str
    device: str
    arch: str
    time_ms: int

    @property
    def key(self) -> str:
        return self.kb or BASELINE_KEY

    def to_wire(self) -> bytes:
        return codec.dumps(
            {"k": self.kind.value, "kb": self.kb, "d": self.device, "a": self.arch, "t": self.time_ms}
        )

    @classmethod
    def from_wire(cls, payload: bytes) -> Evidence:
        wire = codec.loads(payload)
        return cls(EvidenceKind(wire["k"]), str(wire["kb"]), str(wire["d"]), str(wire["a"]), int(wire["t"]))
