"""The fleet agent's state and step: evidence per KB in, `UpdateRegression` out.

One small state per KB (installs per hour and architecture, affected devices
with their times, recoveries) and one for the baseline, kept in a table on a
single-partition topic so that one worker at a time owns every KB and the
baseline beside it.

Facts come from every signals partition at once, and how those interleave
depends on which partition a worker happened to read first. So facts are held
(in the same table, bucketed by event second) until every signals partition has
announced, with a `progress` marker, that the fleet clock passed them; then they
are applied sorted by event time. Live and replay apply the same facts in the
same order and reach the same verdicts. The price is latency: a KB's verdict
waits for the fleet clock (the newest event time minus the allowed lateness).
A fact older than what was already released (later than the allowed lateness)
is applied when it arrives and counted in `kbwatch_evidence_late_total`.

A worker can die between any two of the table writes one piece of evidence
causes (each is a changelog record of its own), and Faust then hands that
evidence over again to a table holding only the first of them. So every write
is safe to make again: held facts are kept until the facts they hold are
applied, and a KB's state and the baseline carry a stamp (the evidence's place
in the agent's sequence and the fact's order) that a fact applied once does not
pass again. Alerts caused by a message whose worker died before sending them
are said again, with every KB's, at the first evidence after the fleet's
partition was taken (`taken_over`).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams import codec
from streams.alerts import UNSET_TIME, Alert
from streams.catalog import KNOWN_ISSUES, Catalog, RegressionRule
from streams.evidence import BASELINE_KEY, PROGRESS_KEY, WITHDRAWS, Evidence, EvidenceKind
from streams.metrics import Metrics
from streams.rules.regression import Verdict, baseline_rate, judge
from streams.timeutil import HOUR_MS, to_rfc3339

log = logging.getLogger(__name__)

MAX_AFFECTED_KEPT = 5_000  # far past any verdict; counts go on beyond it
UNKNOWN_ARCH = "unknown"
HELD_INDEX_KEY = "_held"  # [[event second, facts held for it], ...], sorted
HELD_PREFIX = "_held/"  # + event second: the facts of that second, one wire record a line
INTERNAL_PREFIX = "_"  # KB numbers never start with it
APPLIED_OFFSET_KEY = "_offset"  # `Applied`, written last for each piece of evidence

# Where a fact stands in the fleet agent's work: (sequence number of the evidence
# that applied it, then `Evidence.order`). Increasing within one piece of evidence
# (its facts are applied in order) and from one piece to the next.
Stamp = tuple[int, int, str, str, str, str]


@dataclass(slots=True)
class Applied:
    """What the fleet agent processed last: where it was and how far its sequence has got."""

    offset: int = -1  # on the evidence topic
    newest_ms: int = 0  # the newest produce time of the evidence processed
    sequence: int = 0  # pieces of evidence processed, counting those the table kept

    def to_wire(self) -> bytes:
        return codec.dumps([self.offset, self.newest_ms, self.sequence])

    @classmethod
    def from_wire(cls, payload: bytes) -> Applied:
        wire = codec.loads(payload)
        # Before 0.9.2: [offset, that evidence's produce time], and no sequence.
        return cls(wire[0], wire[1], wire[2] if len(wire) > 2 else 0)


def _stamp_to_wire(stamp: Stamp | None) -> list[Any] | None:
    return list(stamp) if stamp is not None else None


def _stamp_from_wire(wire: list[Any] | None) -> Stamp | None:
    return (wire[0], wire[1], wire[2], wire[3], wire[4], wire[5]) if wire else None


@dataclass(slots=True)
class Progress:
    """How far each signals partition has got, and what was released to the rules."""

    marks: dict[int, int] = field(default_factory=dict)  # partition -> fleet time announced
    released_ms: int = 0  # every fact before this was applied

    def to_wire(self) -> bytes:
        return codec.dumps({"m": sorted(self.marks.items()), "r": self.released_ms})

    @classmethod
    def from_wire(cls, payload: bytes) -> Progress:
        wire = codec.loads(payload)
        return cls(marks={partition: ms for partition, ms in wire["m"]}, released_ms=wire["r"])


@dataclass(slots=True)
class KbState:
    """Evidence about one KB."""

    kb: str
    installs: dict[str, dict[int, int]] = field(default_factory=dict)  # arch -> hour -> count
    affected: list[tuple[int, str, str]] = field(default_factory=list)  # (time, arch, device), sorted
    affected_total: int = 0
    recovered: int = 0  # devices recovered now (recoveries minus relapses)
    last_recovered_ms: int = 0
    # device -> (recovered now, event time of the fact that said so): what makes a
    # recovery or relapse sent again count once. Devices past the affected cap are counted only.
    said: dict[str, tuple[bool, int]] = field(default_factory=dict)
    # (fingerprint, starts, ends, arch label fixed when it first fired)
    episodes: list[tuple[str, int, int, str]] = field(default_factory=list)
    stamp: Stamp | None = None  # the last fact applied or judged here (live only)

    def installed_total(self) -> int:
        return sum(sum(hours.values()) for hours in self.installs.values())

    def first_install_hour(self) -> int:
        return min((min(hours) for hours in self.installs.values() if hours), default=0)

    def failing(self) -> int:
        return max(0, self.affected_total - self.recovered)

    def to_wire(self) -> bytes:
        return codec.dumps(
            {
                "kb": self.kb,
                "i": {
                    arch: [[hour, count] for hour, count in sorted(hours.items())]
                    for arch, hours in self.installs.items()
                },
                "a": [list(entry) for entry in self.affected],
                "n": self.affected_total,
                "r": self.recovered,
                "l": self.last_recovered_ms,
                "e": [list(episode) for episode in self.episodes],
                "s": {device: [int(recovered), ms] for device, (recovered, ms) in self.said.items()},
                "st": _stamp_to_wire(self.stamp),
            }
        )

    @classmethod
    def from_wire(cls, payload: bytes) -> KbState:
        wire: dict[str, Any] = codec.loads(payload)
        return cls(
            kb=wire["kb"],
            installs={arch: {hour: count for hour, count in pairs} for arch, pairs in wire["i"].items()},
            # Entries had no device before 0.5.
            affected=[(entry[0], entry[1], entry[2] if len(entry) > 2 else "") for entry in wire["a"]],
            affected_total=wire["n"],
            recovered=wire["r"],
            last_recovered_ms=wire["l"],
            episodes=[(fp, starts, ends, arch) for fp, starts, ends, arch in wire["e"]],
            # Not kept before 0.8.4: those devices' facts are counted as they come.
            said={device: (bool(recovered), ms) for device, (recovered, ms) in wire.get("s", {}).items()},
            stamp=_stamp_from_wire(wire.get("st")),  # not kept before 0.9.2
        )


@dataclass(slots=True)
class BaselineState:
    """Device-windows without an install, and boot loops among them, per hour."""

    exposure: dict[int, int] = field(default_factory=dict)
    loops: dict[int, int] = field(default_factory=dict)
    stamp: Stamp | None = None  # the last fact counted here (live only)

    def count(self, evidence: Evidence) -> None:
        """Add a baseline fact to its hour, or take a withdrawn one off."""
        hour = evidence.time_ms // HOUR_MS
        kind = WITHDRAWS.get(evidence.kind, evidence.kind)
        counts = self.exposure if kind is EvidenceKind.EXPOSURE else self.loops
        if evidence.kind not in WITHDRAWS:
            counts[hour] = counts.get(hour, 0) + 1
        # A withdrawal whose fact was applied already (the install report came that late);
        # an emptied hour goes, as if never counted.
        elif counts.get(hour, 0) > 1:
            counts[hour] -= 1
        else:
            counts.pop(hour, None)

    def rate_until(self, time_ms: int, rule: RegressionRule) -> float:
        hour = time_ms // HOUR_MS
        exposure = sum(count for h, count in self.exposure.items() if h <= hour)
        loops = sum(count for h, count in self.loops.items() if h <= hour)
        return baseline_rate(loops, exposure, rule)

    def to_wire(self) -> bytes:
        return codec.dumps(
            {
                "x": sorted(self.exposure.items()),
                "l": sorted(self.loops.items()),
                "st": _stamp_to_wire(self.stamp),
            }
        )

    @classmethod
    def from_wire(cls, payload: bytes) -> BaselineState:
        wire = codec.loads(payload)
        return cls(
            exposure={h: c for h, c in wire["x"]},
            loops={h: c for h, c in wire["l"]},
            stamp=_stamp_from_wire(wire.get("st")),
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    """A KB's verdict now: when it turned bad (0 if it has not) and its cohorts."""

    starts_ms: int
    verdict: Verdict
    cohorts: list[tuple[str, Verdict]]


def assess(state: KbState, baseline: BaselineState, rule: RegressionRule) -> Assessment:
    """Walk the affected devices in event time; the first significant look is the start."""
    hours = sorted({hour for arch_hours in state.installs.values() for hour in arch_hours})
    cumulative: list[int] = []
    running = 0
    for hour in hours:
        running += sum(arch_hours.get(hour, 0) for arch_hours in state.installs.values())
        cumulative.append(running)
    starts_ms = 0
    verdict = judge(0, state.installed_total(), baseline.rate_until(2**62, rule), rule)
    for index, (time_ms, _, _) in enumerate(state.affected):
        position = bisect.bisect_right(hours, time_ms // HOUR_MS)
        installed = cumulative[position - 1] if position else 0
        look = judge(index + 1, installed, baseline.rate_until(time_ms, rule), rule)
        if look.significant:
            starts_ms = time_ms
            break
    if state.affected:
        last_time = state.affected[-1][0]
        verdict = judge(
            len(state.affected), state.installed_total(), baseline.rate_until(last_time, rule), rule
        )
    return Assessment(starts_ms, verdict, _cohorts(state, verdict.baseline, rule))


def _cohorts(state: KbState, baseline: float, rule: RegressionRule) -> list[tuple[str, Verdict]]:
    cohorts = []
    for arch in sorted(state.installs):
        affected = sum(1 for _, affected_arch, _ in state.affected if affected_arch == arch)
        cohorts.append((arch, judge(affected, sum(state.installs[arch].values()), baseline, rule)))
    return cohorts


class FleetEngine:
    """Applies evidence to KB states (a Faust table or a dict) and emits fleet alerts."""

    def __init__(
        self, states: MutableMapping[str, bytes], catalog: Catalog, metrics: Metrics, partitions: int = 1
    ) -> None:
        self.states = states
        self.catalog = catalog
        self.metrics = metrics
        self.partitions = partitions  # of the signals topic: each must announce its progress
        self._sequence: int | None = None  # of the evidence in hand, live only: what stamps are made of
        self._say_again = False

    def taken_over(self) -> None:
        """The evidence partition is (again) this worker's: say every KB's alerts at the next evidence.

        Whoever processed evidence last, this worker before a restart or another
        one, may have died after its table writes reached the changelog and before
        the alerts they caused reached the broker; the evidence is then skipped
        (or finds its facts applied) when handed over again, and nothing else
        would send those alerts.
        """
        self._say_again = True

    def process(self, evidence: Evidence, offset: int | None = None, timestamp_ms: int = 0) -> list[Alert]:
        """Take one fact or progress marker; return the `UpdateRegression` changes it released.

        `offset` and `timestamp_ms` (its place on the evidence topic and when it
        was produced; live only) make this idempotent: after a crash Faust hands
        over again what came after its last commit, and the restored table may
        already hold its effect, or part of it. Install and baseline counts are
        not sets, so a fact applied twice would count a device twice.
        """
        if offset is None:
            return self._process(evidence)
        alerts = self._said_so_far() if self._say_again else []
        self._say_again = False
        stored = self.states.get(APPLIED_OFFSET_KEY)
        applied = Applied.from_wire(stored) if stored is not None else Applied()
        if offset <= applied.offset:
            # Evidence comes from every worker's device agents, so produce times are
            # not in offset order: what was applied is what is no newer than the newest.
            if timestamp_ms <= applied.newest_ms:
                self.metrics.evidence_replayed.inc()
                return alerts
            # Produced after everything applied, at an earlier offset: the topic was
            # created again and counts from 0. Skipping would silence the fleet.
            log.warning(
                "evidence offset %d is behind %d but newer: the evidence topic was recreated",
                offset,
                applied.offset,
            )
        self._sequence = applied.sequence + 1
        try:
            alerts += self._process(evidence)
        finally:
            self._sequence = None
        # Written after the evidence's other changes: a crash that loses this write
        # has this evidence handed over again, and its writes are safe to make again.
        self.states[APPLIED_OFFSET_KEY] = Applied(
            offset, max(timestamp_ms, applied.newest_ms), applied.sequence + 1
        ).to_wire()
        return alerts

    def _said_so_far(self) -> list[Alert]:
        """Every episode of every KB as it stands, sent again (`taken_over`)."""
        alerts = []
        baseline = self._baseline()
        for kb in self._kbs():
            state = self._kb(kb)
            if state.episodes:
                assessment = assess(state, baseline, self.catalog.regression)
                alerts += [self._render(state, assessment, episode) for episode in state.episodes]
        self.metrics.alerts_resent.inc(len(alerts))
        return alerts

    def _process(self, evidence: Evidence) -> list[Alert]:
        if evidence.kind is EvidenceKind.PROGRESS:
            return self._advance(evidence.partition, evidence.time_ms)
        if evidence.time_ms < self._progress().released_ms:
            return self._apply(evidence, late=True)
        self._hold(evidence)
        return []

    def _progress(self) -> Progress:
        stored = self.states.get(PROGRESS_KEY)
        return Progress.from_wire(stored) if stored is not None else Progress()

    def _held_index(self) -> list[list[int]]:
        stored = self.states.get(HELD_INDEX_KEY)
        return codec.loads(stored) if stored is not None else []

    def _hold(self, evidence: Evidence) -> None:
        """Keep a fact until its second is released: its bucket first, then the index naming it."""
        second = evidence.time_ms // 1000
        key = f"{HELD_PREFIX}{second}"
        wire = evidence.to_wire()
        held = self.states.get(key)
        facts = held.split(b"\n") if held is not None else []
        if wire not in facts:  # else the same fact again (a re-sent device signal): it counts once
            facts.append(wire)
            self.states[key] = held + b"\n" + wire if held is not None else wire
        index = self._held_index()
        position = bisect.bisect_left(index, [second, 0])
        if position < len(index) and index[position][0] == second:
            if index[position][1] == len(facts):
                return
            index[position][1] = len(facts)
        else:
            # Also a bucket written just before a crash: the index did not name it yet.
            index.insert(position, [second, len(facts)])
        self.states[HELD_INDEX_KEY] = codec.dumps(index)
        self.metrics.evidence_held.set(sum(count for _, count in index))

    def _advance(self, partition: int, fleet_ms: int) -> list[Alert]:
        """A partition announced its fleet time: apply, in event-time order, what all have passed."""
        progress = self._progress()
        progress.marks[partition] = max(progress.marks.get(partition, 0), fleet_ms)
        alerts: list[Alert] = []
        if all(number in progress.marks for number in range(self.partitions)):
            # Whole seconds only: the buckets held are seconds.
            released_ms = min(progress.marks[number] for number in range(self.partitions)) // 1000 * 1000
            if released_ms > progress.released_ms:
                progress.released_ms = released_ms
                alerts = self._release(released_ms)
        self.states[PROGRESS_KEY] = progress.to_wire()
        return alerts

    def _release(self, before_ms: int) -> list[Alert]:
        """Apply the facts held for seconds before `before_ms`, then let their buckets go.

        In that order: a crash between leaves the buckets, and the stamps make
        their facts count once when the same progress marker releases them again.
        """
        index = self._held_index()
        due = [second for second, _ in index if second * 1000 < before_ms]
        if not due:
            return []
        facts: list[Evidence] = []
        for second in due:
            held = self.states.get(f"{HELD_PREFIX}{second}")
            if held is not None:  # else applied and let go just before a crash
                facts += [Evidence.from_wire(line) for line in held.split(b"\n")]
        alerts: list[Alert] = []
        for fact in sorted(_net(facts), key=Evidence.order):
            alerts += self._apply(fact)
        for second in due:
            self.states.pop(f"{HELD_PREFIX}{second}", None)
        remaining = index[len(due) :]
        self.states[HELD_INDEX_KEY] = codec.dumps(remaining)
        self.metrics.evidence_held.set(sum(count for _, count in remaining))
        return alerts

    def _stamp(self, evidence: Evidence) -> Stamp | None:
        if self._sequence is None:
            return None
        return (self._sequence, *evidence.order())

    def _apply(self, evidence: Evidence, late: bool = False) -> list[Alert]:
        """Apply one fact now; return the `UpdateRegression` state changes it caused."""
        self.metrics.evidence.labels(evidence.kind.value).inc()
        if evidence.kb:
            return self._apply_to_kb(evidence, late)
        if late:
            self.metrics.evidence_late.inc()
        return self._apply_to_baseline(evidence)

    def _apply_to_kb(self, evidence: Evidence, late: bool) -> list[Alert]:
        state = self._kb(evidence.kb)
        stamp = self._stamp(evidence)
        if _passed(state.stamp, stamp):
            return []  # applied just before a crash: the evidence came again
        if not _apply_kb(state, evidence):
            return []  # said again after a crash or a duplicate: not late, only repeated
        if late:
            self.metrics.evidence_late.inc()
        alerts = self._evaluate(state, self._baseline())
        state.stamp = stamp
        self.states[evidence.kb] = state.to_wire()
        self._trim()
        self._export()
        return alerts

    def _apply_to_baseline(self, evidence: Evidence) -> list[Alert]:
        """A baseline fact moves every KB's comparison: judge again those with enough affected."""
        baseline = self._baseline()
        stamp = self._stamp(evidence)
        if not _passed(baseline.stamp, stamp):
            baseline.count(evidence)
            baseline.stamp = stamp
            self.states[BASELINE_KEY] = baseline.to_wire()
        alerts = []
        for kb in self._kbs():
            state = self._kb(kb)
            if state.affected_total < self.catalog.regression.min_affected or _passed(state.stamp, stamp):
                continue
            alerts += self._evaluate(state, baseline)
            state.stamp = stamp
            self.states[kb] = state.to_wire()
        return alerts

    def _kb(self, kb: str) -> KbState:
        stored = self.states.get(kb)
        return KbState.from_wire(stored) if stored is not None else KbState(kb)

    def _baseline(self) -> BaselineState:
        stored = self.states.get(BASELINE_KEY)
        return BaselineState.from_wire(stored) if stored is not None else BaselineState()

    def _kbs(self) -> list[str]:
        return [key for key in list(self.states.keys()) if not key.startswith(INTERNAL_PREFIX)]

    def _evaluate(self, state: KbState, baseline: BaselineState) -> list[Alert]:
        rule = self.catalog.regression
        assessment = assess(state, baseline, rule)
        firing = bool(assessment.starts_ms) and state.failing() > 0
        current = state.episodes[-1] if state.episodes else None
        if firing and (current is None or current[2]):
            # A first verdict starts where the evidence turned significant; a
            # re-opened one where the newest affected device appeared.
            starts = assessment.starts_ms if current is None else max(entry[0] for entry in state.affected)
            episode = (_fingerprint(state.kb, len(state.episodes)), starts, 0, _excess(assessment, rule))
            state.episodes.append(episode)
            return [self._alert(state, assessment, episode)]
        if current is None or current[2]:
            return []
        if not firing:
            state.episodes[-1] = (
                current[0],
                current[1],
                max(state.last_recovered_ms, current[1]),
                current[3],
            )
        elif assessment.starts_ms and assessment.starts_ms < current[1]:
            state.episodes[-1] = (current[0], assessment.starts_ms, 0, current[3])
        else:
            return []
        return [self._alert(state, assessment, state.episodes[-1])]

    def _alert(self, state: KbState, assessment: Assessment, episode: tuple[str, int, int, str]) -> Alert:
        alert = self._render(state, assessment, episode)
        self.metrics.alerts.labels(alert.labels["alertname"], alert.labels["severity"], alert.status).inc()
        return alert

    def _render(self, state: KbState, assessment: Assessment, episode: tuple[str, int, int, str]) -> Alert:
        catalog = self.catalog
        return regression_alert(
            state, assessment, catalog.regression, episode, catalog.runbook_url(catalog.regression.alertname)
        )

    def _trim(self) -> None:
        """Keep the newest `max_tracked_kbs` KBs by first install."""
        kbs = self._kbs()
        limit = self.catalog.regression.max_tracked_kbs
        if len(kbs) <= limit:
            return
        by_age = sorted(kbs, key=lambda kb: self._kb(kb).first_install_hour())
        for kb in by_age[: len(kbs) - limit]:
            del self.states[kb]

    def _export(self) -> None:
        """Per-KB gauges for the newest `metric_kbs` KBs; the rest summed as `other`."""
        states = sorted(
            (self._kb(kb) for kb in self._kbs()), key=lambda s: s.first_install_hour(), reverse=True
        )
        shown = states[: self.catalog.regression.metric_kbs]
        rest = states[self.catalog.regression.metric_kbs :]
        self.metrics.set_kb_gauges(
            {s.kb: (s.installed_total(), s.affected_total, s.recovered, s.failing()) for s in shown},
            (
                sum(s.installed_total() for s in rest),
                sum(s.affected_total for s in rest),
                sum(s.recovered for s in rest),
                sum(s.failing() for s in rest),
            ),
        )


def _passed(applied: Stamp | None, stamp: Stamp | None) -> bool:
    """Whether a state stamped `applied` already holds the fact stamped `stamp`."""
    return applied is not None and stamp is not None and stamp <= applied


def _apply_kb(state: KbState, evidence: Evidence) -> bool:
    """Fold one fact into the KB's state; False when it changed nothing (a fact said already).

    A device agent sends each fact once, but a crash can lose one or send one
    again: killed after its state was written and before its evidence was, the
    fact is lost (the device's facts are said again with its next duplicate
    record and at the first tick after the restart, `detector.said_so_far`);
    killed the other way round, it sends the fact again. So facts about a
    device are folded as its status: said again, they change nothing.
    """
    arch = evidence.arch or UNKNOWN_ARCH
    device = evidence.device
    if evidence.kind is EvidenceKind.INSTALLED:
        hours = state.installs.setdefault(arch, {})
        hour = evidence.time_ms // HOUR_MS
        hours[hour] = hours.get(hour, 0) + 1
    elif evidence.kind is EvidenceKind.AFFECTED:
        known = _affected_entry(state, device)
        if known is not None:
            if evidence.time_ms >= known[0]:
                return False
            # The device's start moved earlier (a late record): counted once, at its earliest.
            state.affected.remove(known)
            bisect.insort(state.affected, (evidence.time_ms, arch, device))
            return True
        _count_affected(state, evidence.time_ms, arch, device)
    elif evidence.kind is EvidenceKind.RECOVERED:
        said = state.said.get(device)
        if said is not None and (said[0] or evidence.time_ms < said[1]):
            return False  # said already, or older than the relapse said after it
        if _tracked(state, device):
            if said is None and _affected_entry(state, device) is None and _lists_every_affected(state):
                # Only an affected device recovers: its `affected` fact was lost. It
                # counts from its recovery until that fact comes again (earlier).
                _count_affected(state, evidence.time_ms, arch, device)
            state.said[device] = (True, evidence.time_ms)
        state.recovered += 1
        state.last_recovered_ms = max(state.last_recovered_ms, evidence.time_ms)
    elif evidence.kind is EvidenceKind.RELAPSED:
        said = state.said.get(device)
        if said is not None and (not said[0] or evidence.time_ms < said[1]):
            return False
        # A relapse undoes a recovery: this device's, or one counted without its
        # device (before 0.8.4, past the cap). Its own recovery may have been lost.
        undoes = said is not None or state.recovered > sum(1 for now, _ in state.said.values() if now)
        if _tracked(state, device):
            state.said[device] = (False, evidence.time_ms)
        if undoes:
            state.recovered = max(0, state.recovered - 1)
    return True


def _net(facts: list[Evidence]) -> list[Evidence]:
    """The facts released together, less each withdrawn fact and its withdrawal.

    A fact and its withdrawal share their event time, so both are held until
    the same release when the install report came within the allowed lateness:
    dropping the pair then leaves the verdict exactly as if the report had been
    read first (replay's order). Applying one after the other instead would
    judge the KBs in between, on a baseline that never was.
    """
    withdrawn = {_withdrawn_key(fact) for fact in facts if fact.kind in WITHDRAWS}
    if not withdrawn:
        return facts
    # A device sends each baseline fact once (and `_hold` keeps one copy of a fact
    # sent again), so a key names at most one fact and one withdrawal here.
    cancelled = withdrawn & {_withdrawn_key(fact) for fact in facts if fact.kind in _WITHDRAWABLE}
    return [fact for fact in facts if _withdrawn_key(fact) not in cancelled]


_WITHDRAWABLE = frozenset(WITHDRAWS.values())


def _withdrawn_key(fact: Evidence) -> tuple[EvidenceKind, str, int]:
    """What a fact and its withdrawal have in common: the fact's kind, device and time."""
    return (WITHDRAWS.get(fact.kind, fact.kind), fact.device, fact.time_ms)


def _affected_entry(state: KbState, device: str) -> tuple[int, str, str] | None:
    return next((entry for entry in state.affected if entry[2] == device), None)


def _count_affected(state: KbState, time_ms: int, arch: str, device: str) -> None:
    state.affected_total += 1
    if len(state.affected) < MAX_AFFECTED_KEPT:
        bisect.insort(state.affected, (time_ms, arch, device))


def _lists_every_affected(state: KbState) -> bool:
    """Whether a device missing from `affected` was never counted (not past the cap, not unnamed)."""
    # Entries had no device before 0.5.
    return len(state.affected) == state.affected_total and all(entry[2] for entry in state.affected)


def _tracked(state: KbState, device: str) -> bool:
    """Whether the device's status is kept: as far as the affected devices themselves are."""
    return bool(device) and (device in state.said or len(state.said) < MAX_AFFECTED_KEPT)


def _fingerprint(kb: str, sequence: int) -> str:
    return hashlib.sha256(f"UpdateRegression\x1f{kb}\x1f{sequence}".encode()).hexdigest()[:16]


def _excess(assessment: Assessment, rule: RegressionRule) -> str:
    """The architectures carrying the excess, or `all` when every one does."""
    baseline = assessment.verdict.baseline
    excess = [
        arch
        for arch, look in assessment.cohorts
        if look.affected and look.rate >= rule.min_rate_ratio * baseline
    ]
    return ",".join(excess) if excess and len(excess) < len(assessment.cohorts) else "all"


def regression_alert(
    state: KbState,
    assessment: Assessment,
    rule: RegressionRule,
    episode: tuple[str, int, int, str],
    runbook_url: str,
) -> Alert:
    """Render a KB's verdict: labels without any device, numbers in the annotations."""
    fingerprint, starts, ends, arch_label = episode
    verdict = assessment.verdict
    cohort_text = "; ".join(
        f"{arch}: {look.affected}/{look.installed} ({look.rate:.1%})" for arch, look in assessment.cohorts
    )
    known = KNOWN_ISSUES.get(state.kb)
    action = (
        f"Pause the deployment ring of {state.kb} now. "
        + (
            f"Apply the Known Issue Rollback Group Policy ({known.kir_policy}), "
            "then restart affected devices. "
            if known and known.kir_policy
            else "Apply Microsoft's Known Issue Rollback Group Policy for it when published; until then, "
            "uninstall it from affected devices (WinRE for those that cannot boot). "
        )
        + "VBS state is not reported by the inputs, so cohorts are by architecture only."
    )
    labels = {
        "alertname": rule.alertname,
        "severity": rule.severity,
        "kb": state.kb,
        "arch": arch_label,
    }
    annotations = {
        "summary": (
            f"{state.kb} is bad: {verdict.affected} of {verdict.installed} devices ({verdict.rate:.1%}) "
            f"boot-looped or went silent within 72 h, baseline {verdict.baseline:.2%}"
        ),
        "description": (
            f"Devices that installed {state.kb} had a boot loop or went silent after its restart "
            f"{verdict.rate / verdict.baseline:.0f} times as often as devices without a recent "
            f"update (sequential test, log evidence {verdict.log_evidence:.1f}, "
            f"false-alarm bound {rule.alpha}). By architecture: {cohort_text}. "
            f"Still failing: {state.failing()}, recovered: {state.recovered}. "
            + (f"Known issue: {known.symptom}. " if known else "")
            + action
        ),
        "runbook_url": runbook_url,
        "installed": str(verdict.installed),
        "affected": str(verdict.affected),
        "rate": f"{verdict.rate:.4f}",
        "baseline": f"{verdict.baseline:.4f}",
        "action": action,
    }
    return Alert(
        status="resolved" if ends else "firing",
        labels=labels,
        annotations=annotations,
        starts_at=to_rfc3339(starts),
        ends_at=to_rfc3339(ends) if ends else UNSET_TIME,
        fingerprint=fingerprint,
    )
