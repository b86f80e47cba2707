"""Evidence: what device agents tell the fleet agent, once per fact.

Once as a rule: a duplicate record, and the first tick after a restart or
takeover, make a device agent say its devices' `affected` and `recovered`
facts again (a crash may have lost them), and the fleet agent folds those as
each device's status, so repeating one is harmless.

Baseline facts (exposure, background loops) say a device had no install
before them, which only holds for the installs known then: install reports
come on their own topic, late or in bulk, and a restart can be read before the
report of the install that caused it. A device agent that learns of such an
install withdraws the baseline facts it covers, so the verdict does not depend
on which topic was read first.

Sent on `kbwatch-evidence` (one partition: KBs are few and the fleet verdict
needs the baseline beside every KB), keyed by KB (`_baseline` for baseline
facts). Each device agent also sends a `progress` marker after every fleet
tick it handled: the fleet agent applies facts in event-time order once every
signals partition has passed them, so that the interleaving of partitions
never decides a verdict. Contract of the topic: `schemas/evidence.schema.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from streams import codec

BASELINE_KEY = "_baseline"
PROGRESS_KEY = "_progress"


class EvidenceKind(StrEnum):
    """One fact about one device and one KB (or the baseline)."""

    INSTALLED = "installed"  # the device installed the KB
    AFFECTED = "affected"  # it then had a boot loop or went silent
    RECOVERED = "recovered"  # every such alert of it for the KB resolved
    RELAPSED = "relapsed"  # affected again after recovering
    EXPOSURE = "exposure"  # a device-window of 72 h with no install before it (baseline)
    BACKGROUND_LOOP = "background_loop"  # a boot loop with no install before it (baseline)
    # A late install report covers a baseline fact already sent: take it back.
    EXPOSURE_WITHDRAWN = "exposure_withdrawn"
    BACKGROUND_LOOP_WITHDRAWN = "background_loop_withdrawn"
    PROGRESS = "progress"  # not a fact: signals partition `partition` reached fleet time `time_ms`


# A withdrawal names the fact it takes back: the same device and event time.
WITHDRAWS = {
    EvidenceKind.EXPOSURE_WITHDRAWN: EvidenceKind.EXPOSURE,
    EvidenceKind.BACKGROUND_LOOP_WITHDRAWN: EvidenceKind.BACKGROUND_LOOP,
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """A fact for the fleet agent; `time_ms` is its event time."""

    kind: EvidenceKind
    kb: str
    device: str
    arch: str
    time_ms: int
    partition: int = -1  # progress markers only

    @classmethod
    def progress(cls, partition: int, fleet_ms: int) -> Evidence:
        return cls(EvidenceKind.PROGRESS, "", "", "", fleet_ms, partition)

    @property
    def key(self) -> str:
        if self.kind is EvidenceKind.PROGRESS:
            return PROGRESS_KEY
        return self.kb or BASELINE_KEY

    def order(self) -> tuple[int, str, str, str, str]:
        """The order facts of one event time are applied in: the same live and in replay."""
        return (self.time_ms, self.kind.value, self.kb, self.arch, self.device)

    def to_wire(self) -> bytes:
        wire: dict[str, object] = {
            "k": self.kind.value,
            "kb": self.kb,
            "d": self.device,
            "a": self.arch,
            "t": self.time_ms,
        }
        if self.kind is EvidenceKind.PROGRESS:
            wire["p"] = self.partition
        return codec.dumps(wire)

    @classmethod
    def from_wire(cls, payload: bytes) -> Evidence:
        wire = codec.loads(payload)
        kind = EvidenceKind(wire["k"])
        partition = int(wire["p"]) if kind is EvidenceKind.PROGRESS else -1
        if kind is EvidenceKind.PROGRESS and partition < 0:
            raise ValueError(f"progress marker for partition {partition}")
        return cls(kind, str(wire["kb"]), str(wire["d"]), str(wire["a"]), int(wire["t"]), partition)
