"""The device detector: (state, signal) -> (state, alerts, evidence), in event time.

This is the one function both the live device agent and `kbwatch replay`
call. It folds the signal into the device's bounded state, re-derives every
rule's episodes from that state as a set, and returns an alert for each
episode whose sent form changed, plus the facts the fleet agent needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from streams.alerts import Alert, device_alert, fingerprint
from streams.boots import CrashBoot, crash_boots
from streams.catalog import Catalog
from streams.device import AppCrash, DeviceState, Episode, Install, Marker, Reported, Restart
from streams.evidence import Evidence, EvidenceKind
from streams.rules.app_crash import app_crash_loops
from streams.rules.boot_loop import background_loops, boot_loops
from streams.rules.findings import Finding
from streams.rules.hello import hello_failures
from streams.rules.silence import pending_deadline, silences
from streams.signals import Signal, SignalKind
from streams.timeutil import HOUR_MS, MINUTE_MS

_BOOT_KINDS = frozenset(
    {SignalKind.BOOT_START, SignalKind.DIRTY_BOOT, SignalKind.FORCED_OFF, SignalKind.BUGCHECK}
)
_HELLO_KINDS = frozenset({SignalKind.HELLO_FAILURE, SignalKind.HELLO_SUCCESS})
# Records a restart writes on its way down (Kernel-General 13, EventLog 6006)
# come seconds after the 1074; only what comes later means the device is back.
SHUTDOWN_GRACE_MS = 2 * MINUTE_MS
EXPOSURE_EPOCH_MS = 72 * HOUR_MS


class Applied(StrEnum):
    """What a signal did to the state; values are `outcome` metric labels."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    SEEN = "seen"
    REFUSED = "refused"  # a new device past `StateLimits.max_devices` (set by the engine)


@dataclass(frozen=True, slots=True)
class Result:
    """A detector step: the new state, what to send, and metric facts."""

    state: DeviceState
    alerts: list[Alert]
    applied: Applied
    new_crash_boots: int = 0
    evidence: list[Evidence] = field(default_factory=list)
    new_boot_loops: list[Episode] = field(default_factory=list)  # first firings, for metrics
    # For a duplicate: the device's episodes as sent, in case the first delivery's
    # alerts were lost (the worker died after its state was written, before they were).
    resent: list[Alert] = field(default_factory=list)


def apply(state: DeviceState | None, signal: Signal, catalog: Catalog) -> Result:
    """Fold one signal into a device's state and say which alerts changed."""
    if signal.kind is SignalKind.SEEN and state is not None:
        # Nine signals in ten are a known device's clock moving on: spare them the copies.
        quick = _clock_only(state, signal, catalog)
        if quick is not None:
            return quick
    return fold(state, signal, catalog)


def fold(state: DeviceState | None, signal: Signal, catalog: Catalog) -> Result:
    """`apply`'s one full path, for every signal: what `_clock_only` must equal."""
    current = _copy(state) if state is not None else DeviceState(device=signal.device)
    evidence: list[Evidence] = []
    if signal.kind is SignalKind.TICK:
        current.fleet_ms = max(current.fleet_ms, signal.time_ms)
        applied = Applied.SEEN
    else:
        if _too_late(current, signal, catalog):
            return Result(current, [], Applied.TOO_LATE)
        _note_device(current, signal)
        _note_back(current, signal)
        evidence += _exposure(current, signal)
        applied = _add(current, signal, catalog, evidence)
    _prune(current, catalog)
    if applied is Applied.DUPLICATE:
        resent, facts = said_so_far(current, catalog)
        return Result(current, [], applied, 0, evidence + facts, resent=resent)
    if applied is Applied.SEEN and not _watching(current, catalog):
        return Result(current, [], applied, 0, evidence)
    crashes = crash_boots(current.markers)
    findings = _findings(current, crashes, catalog)
    alerts = _reconcile(current, findings, catalog, evidence)
    evidence += _background(current, crashes, catalog)
    new_crash_boots = 0
    if signal.kind in _BOOT_KINDS and applied is Applied.COUNTED:
        before = len(crash_boots(state.markers)) if state is not None else 0
        new_crash_boots = max(0, len(crashes) - before)
    known = {episode.fingerprint for episode in state.episodes} if state is not None else set()
    new_loops = [
        episode
        for episode in current.episodes
        if episode.fingerprint not in known and episode.alertname == catalog.boot_loop.alertname
    ]
    return Result(current, alerts, applied, new_crash_boots, evidence, new_loops)


# Not frozen, as `Signal`: a frozen init sets each field through `object.__setattr__`, and
# the quick path makes one for every `seen` it is given alone. Never changed once built.
@dataclass(slots=True)
class ClockLimits:
    """When a `seen` can only move a state's clock and names, whatever its newest time then.

    Worked out once per state: they depend on its lists alone, which a `seen`
    taking the quick path leaves as they are, so a run of such `seen` (a
    `seen_many` names a device once per ten minutes it held) is judged by
    these few comparisons each (`Engine.process_seen`).
    """

    epoch_end_ms: int  # from here a new exposure epoch starts
    ages_out_ms: int  # as newest time, from here `_prune` would change a list
    returns: tuple[tuple[int, int], ...]  # (after, before): a `seen` between moves a restart's return

    def allow(self, time_ms: int, newest_ms: int) -> bool:
        """Whether a `seen` at `time_ms` only moves the clock of a state whose newest time is `newest_ms`."""
        if time_ms >= self.epoch_end_ms or (time_ms > newest_ms and time_ms >= self.ages_out_ms):
            return False
        return not any(after < time_ms < before for after, before in self.returns)


def clock_limits(state: DeviceState, catalog: Catalog) -> ClockLimits | None:
    """`ClockLimits` of `state`; None when any `seen` could do more (something fires or waits)."""
    if _watching(state, catalog):
        return None
    returns = tuple(
        (restart.time_ms + SHUTDOWN_GRACE_MS, restart.back_ms)
        for restart in state.restarts
        if restart.back_ms
    )
    epoch_end_ms = (state.exposure_epoch + 1) * EXPOSURE_EPOCH_MS
    return ClockLimits(epoch_end_ms, _ages_out_at(state, catalog), returns)


def _clock_only(state: DeviceState, signal: Signal, catalog: Catalog) -> Result | None:
    """A `seen` that can only move the device's clock and names: `fold`'s result, cheaply.

    None whenever it could do more, and `fold` decides: something fires or
    waits, a restart's return moves earlier, a new exposure epoch starts, or
    the later clock lets a kept record age out (`clock_limits`). The lists are
    then shared with `state`, which is safe: the detector never changes a list
    it was given.
    """
    time_ms = signal.time_ms
    limits = clock_limits(state, catalog)
    if limits is None or not limits.allow(time_ms, state.newest_ms):
        return None
    if time_ms <= state.newest_ms and _notes_nothing(state, signal):
        # A repeat, or an older bucket read after a newer one: no copy to make.
        return Result(state, [], Applied.SEEN)
    # Spelled out, not `dataclasses.replace`, which costs as much as the rest of this.
    current = DeviceState(
        device=state.device,
        newest_ms=state.newest_ms,
        host=state.host,
        build=state.build,
        arch=state.arch,
        markers=state.markers,
        hello=state.hello,
        app_crashes=state.app_crashes,
        restarts=state.restarts,
        installs=state.installs,
        episodes=state.episodes,
        reported=state.reported,
        background_loops=state.background_loops,
        exposure_epoch=state.exposure_epoch,
        exposure_ms=state.exposure_ms,
        fleet_ms=state.fleet_ms,
        partition=state.partition,
    )
    _note_device(current, signal)  # scalars only: the shared lists stay as they were
    return Result(current, [], Applied.SEEN)


# As a newest time: a state whose lists `_prune` would change at any time, or at none.
_ALWAYS = -(2**63)
_NEVER = 2**63


def _ages_out_at(state: DeviceState, catalog: Catalog) -> int:
    """The first newest time at which `_prune` would change a list of a state it already pruned.

    A pruned state's lists are sorted and within their limits (whatever the
    catalog was), so the first entry of each tells. Times are whole
    milliseconds: an entry ages out once the newest time is past its
    retention by one.
    """
    limits = catalog.limits
    at = _NEVER
    for kept, most in (
        (state.markers, limits.max_markers),
        (state.hello, limits.max_hello_markers),
        (state.app_crashes, limits.max_app_crashes),
        (state.restarts, limits.max_restarts),
    ):
        if len(kept) > most:
            return _ALWAYS
        if kept:
            at = min(at, kept[0].time_ms + limits.marker_retention_ms + 1)
    installs = state.installs
    if len(installs) > limits.max_installs:
        return _ALWAYS
    if installs:
        at = min(at, installs[0].time_ms + limits.install_retention_ms + 1)
    episodes = state.episodes
    if len(episodes) > limits.max_episodes:
        return _ALWAYS
    for episode in episodes:
        if not episode.firing:
            at = min(at, episode.ends_ms + limits.episode_retention_ms + 1)
    if state.reported:
        # Episodes are added after the prune: one may name a KB the prune no longer knew.
        known_kbs = {install.kb for install in installs} | {episode.kb for episode in episodes}
        if any(entry.kb not in known_kbs for entry in state.reported):
            return _ALWAYS
    return at


def is_expired(state: DeviceState, fleet_time_ms: int, catalog: Catalog) -> bool:
    """An idle device far behind the fleet's event time can be forgotten."""
    idle = fleet_time_ms - state.newest_ms > catalog.limits.idle_device_ttl_ms
    return idle and not state.firing()


def silence_deadline(state: DeviceState, catalog: Catalog) -> int:
    """Fleet time at which this device's silence must be judged; 0 if none pending."""
    return pending_deadline(state.restarts, state.installs, state.fleet_ms, catalog.silence)


def _findings(state: DeviceState, crashes: list[CrashBoot], catalog: Catalog) -> list[Finding]:
    return [
        *boot_loops(crashes, state.installs, state.newest_ms, catalog.boot_loop),
        *hello_failures(state.hello, state.installs, catalog.hello),
        *app_crash_loops(state.app_crashes, state.installs, state.newest_ms, catalog.app_crash),
        *silences(state.restarts, state.installs, state.fleet_ms, catalog.silence),
    ]


def _copy(state: DeviceState) -> DeviceState:
    """A copy whose lists `fold` may change. Spelled out, not `dataclasses.replace`, which
    builds its keyword arguments field by field on every one of the device's signals
    but `seen`; a field added to `DeviceState` must be added here (tests/test_engine_batches.py)."""
    return DeviceState(
        device=state.device,
        newest_ms=state.newest_ms,
        host=state.host,
        build=state.build,
        arch=state.arch,
        markers=list(state.markers),
        hello=list(state.hello),
        app_crashes=list(state.app_crashes),
        restarts=list(state.restarts),
        installs=list(state.installs),
        episodes=list(state.episodes),
        reported=list(state.reported),
        background_loops=list(state.background_loops),
        exposure_epoch=state.exposure_epoch,
        exposure_ms=state.exposure_ms,
        fleet_ms=state.fleet_ms,
        partition=state.partition,
    )


def _too_late(state: DeviceState, signal: Signal, catalog: Catalog) -> bool:
    if signal.kind in (SignalKind.INSTALL, SignalKind.SEEN):
        return False
    return signal.time_ms < state.newest_ms - catalog.limits.marker_retention_ms


def _note_device(state: DeviceState, signal: Signal) -> None:
    if signal.time_ms >= state.newest_ms:
        state.newest_ms = signal.time_ms
        state.host = signal.host or state.host
        state.arch = signal.arch or state.arch
        state.build = signal.build or state.build
    else:
        state.host = state.host or signal.host
        state.arch = state.arch or signal.arch
        state.build = state.build or signal.build


def _notes_nothing(state: DeviceState, signal: Signal) -> bool:
    """Whether `_note_device` would leave a state as it is, for a signal no newer than it.

    Its mirror, kept beside it: a change to one must change the other (the
    quick path's tests compare it with `fold` on a fleet with late records).
    """
    if signal.time_ms < state.newest_ms:  # an older record only fills in what is missing
        return (
            (bool(state.host) or not signal.host)
            and (bool(state.arch) or not signal.arch)
            and (bool(state.build) or not signal.build)
        )
    # As new as the state: its names replace the state's.
    return (
        signal.host in ("", state.host)
        and signal.arch in ("", state.arch)
        and signal.build in ("", state.build)
    )


def _note_back(state: DeviceState, signal: Signal) -> None:
    """The device spoke: the earliest record after each restart is its return.

    An OS start proves it at once; anything else counts only after the grace
    in which a restart writes its own shutdown records.
    """
    grace = 0 if signal.kind is SignalKind.BOOT_START else SHUTDOWN_GRACE_MS
    for index, restart in enumerate(state.restarts):
        if signal.time_ms > restart.time_ms + grace and (
            not restart.back_ms or signal.time_ms < restart.back_ms
        ):
            state.restarts[index] = replace(restart, back_ms=signal.time_ms)


def _add(state: DeviceState, signal: Signal, catalog: Catalog, evidence: list[Evidence]) -> Applied:
    kind = signal.kind
    if kind is SignalKind.INSTALL:
        return _add_install(state, signal, catalog, evidence)
    if kind in _BOOT_KINDS:
        return _add_marker(state.markers, signal)
    if kind in _HELLO_KINDS:
        return _add_marker(state.hello, signal)
    key = _record_key(signal)
    if kind is SignalKind.APP_CRASH:
        if any(crash.record_key == key for crash in state.app_crashes):
            return Applied.DUPLICATE
        state.app_crashes.append(AppCrash(signal.time_ms, signal.app, key))
        return Applied.COUNTED
    if kind is SignalKind.RESTART:
        if any(restart.record_key == key for restart in state.restarts):
            return Applied.DUPLICATE
        state.restarts.append(Restart(signal.time_ms, key))
        _note_back(state, replace(signal, time_ms=state.newest_ms))
        return Applied.COUNTED
    if kind is SignalKind.POWER_OFF:
        return Applied.COUNTED
    return Applied.SEEN


def _record_key(signal: Signal) -> str:
    return signal.record_key or f"{signal.kind.value}@{signal.time_ms}/{signal.stop_code}/{signal.app}"


def _add_marker(markers: list[Marker], signal: Signal) -> Applied:
    key = _record_key(signal)
    if any(marker.record_key == key for marker in markers):
        return Applied.DUPLICATE
    markers.append(Marker(signal.time_ms, signal.kind, signal.stop_code, key))
    return Applied.COUNTED


def _add_install(state: DeviceState, signal: Signal, catalog: Catalog, evidence: list[Evidence]) -> Applied:
    merge_ms = catalog.limits.install_merge_ms
    for index, known in enumerate(state.installs):
        if known.kb == signal.kb and abs(known.time_ms - signal.time_ms) <= merge_ms:
            if signal.time_ms < known.time_ms or (not known.build and signal.build):
                state.installs[index] = Install(
                    min(known.time_ms, signal.time_ms),
                    known.kb,
                    known.build or signal.build,
                    known.source if known.time_ms <= signal.time_ms else signal.source,
                )
                evidence += _withdrawn(state, signal.time_ms, catalog)
                return Applied.COUNTED
            return Applied.DUPLICATE
    state.installs.append(Install(signal.time_ms, signal.kb, signal.build, signal.source))
    evidence += _withdrawn(state, signal.time_ms, catalog)
    if not state.reported_status(signal.kb):
        state.reported.append(Reported(signal.kb, "installed"))
        evidence.append(Evidence(EvidenceKind.INSTALLED, signal.kb, state.device, state.arch, signal.time_ms))
    return Applied.COUNTED


def _exposure(state: DeviceState, signal: Signal) -> list[Evidence]:
    """Once per 72 h epoch of a device with no install before it: the baseline's denominator."""
    epoch = signal.time_ms // EXPOSURE_EPOCH_MS
    if epoch <= state.exposure_epoch:
        return []
    state.exposure_epoch = epoch
    state.exposure_ms = 0
    if any(0 <= signal.time_ms - install.time_ms <= EXPOSURE_EPOCH_MS for install in state.installs):
        return []
    if signal.kind is SignalKind.INSTALL:
        return []
    state.exposure_ms = signal.time_ms
    return [Evidence(EvidenceKind.EXPOSURE, "", state.device, state.arch, signal.time_ms)]


def _withdrawn(state: DeviceState, install_ms: int, catalog: Catalog) -> list[Evidence]:
    """The baseline facts an install report read after them covers: taken back.

    Both said the device had no install before them, as `_exposure` and
    `_background` would not have with the report in hand. Read in event
    order, an install withdraws nothing.
    """
    evidence: list[Evidence] = []
    if state.exposure_ms and 0 <= state.exposure_ms - install_ms <= EXPOSURE_EPOCH_MS:
        evidence.append(
            Evidence(EvidenceKind.EXPOSURE_WITHDRAWN, "", state.device, state.arch, state.exposure_ms)
        )
        state.exposure_ms = 0
    after_ms = catalog.boot_loop.after_install_ms
    covered = [first_ms for first_ms in state.background_loops if 0 <= first_ms - install_ms <= after_ms]
    if covered:
        # Dropped from the list too: the install now keeps the loop out of `_background`.
        state.background_loops = [first_ms for first_ms in state.background_loops if first_ms not in covered]
        evidence += [
            Evidence(EvidenceKind.BACKGROUND_LOOP_WITHDRAWN, "", state.device, state.arch, first_ms)
            for first_ms in covered
        ]
    return evidence


def _watching(state: DeviceState, catalog: Catalog) -> bool:
    """Whether a plain `seen` or tick can change anything: something fires or waits."""
    return bool(state.firing()) or any(not restart.back_ms for restart in state.restarts)


def _prune(state: DeviceState, catalog: Catalog) -> None:
    limits = catalog.limits
    horizon = state.newest_ms - limits.marker_retention_ms
    state.markers = sorted(m for m in state.markers if m.time_ms >= horizon)[-limits.max_markers :]
    state.hello = sorted(m for m in state.hello if m.time_ms >= horizon)[-limits.max_hello_markers :]
    state.app_crashes = sorted(c for c in state.app_crashes if c.time_ms >= horizon)[
        -limits.max_app_crashes :
    ]
    state.restarts = sorted(r for r in state.restarts if r.time_ms >= horizon)[-limits.max_restarts :]
    install_horizon = state.newest_ms - limits.install_retention_ms
    installs = sorted(
        (install for install in state.installs if install.time_ms >= install_horizon),
        key=lambda install: (install.time_ms, install.kb),
    )
    state.installs = installs[-limits.max_installs :]
    episode_horizon = state.newest_ms - limits.episode_retention_ms
    kept = [e for e in state.episodes if e.firing or e.ends_ms >= episode_horizon]
    state.episodes = kept[-limits.max_episodes :]
    known_kbs = {install.kb for install in state.installs} | {e.kb for e in state.episodes}
    state.reported = [entry for entry in state.reported if entry.kb in known_kbs]


def _reconcile(
    state: DeviceState, findings: list[Finding], catalog: Catalog, evidence: list[Evidence]
) -> list[Alert]:
    """Match findings to sent episodes; return the alerts for what changed.

    A finding overlapping a sent episode of the same rule and subject is that
    episode: it may start earlier (a late record), end, or re-open, but keeps
    its fingerprint and labels.
    """
    alerts: list[Alert] = []
    for finding in findings:
        index = _matching_episode(state.episodes, finding)
        if index is None:
            episode = _new_episode(state, finding)
            state.episodes.append(episode)
            alerts.append(device_alert(state.device, replace(episode, ends_ms=0), catalog))
            if not episode.firing:
                alerts.append(device_alert(state.device, episode, catalog))
            continue
        sent = state.episodes[index]
        updated = replace(
            sent,
            first_ms=min(sent.first_ms, finding.first_ms),
            starts_ms=min(sent.starts_ms, finding.starts_ms),
            ends_ms=finding.ends_ms,
        )
        if updated != sent:
            state.episodes[index] = updated
            alerts.append(device_alert(state.device, updated, catalog))
    evidence += _fleet_evidence(state, catalog)
    return alerts


def _matching_episode(episodes: list[Episode], finding: Finding) -> int | None:
    finding_end = finding.ends_ms or 2**62
    for index, episode in enumerate(episodes):
        if episode.alertname != finding.alertname or episode.subject != finding.subject:
            continue
        episode_end = episode.ends_ms or 2**62
        if episode.first_ms <= finding_end and finding.first_ms <= episode_end:
            return index
    return None


def _new_episode(state: DeviceState, finding: Finding) -> Episode:
    sequence = sum(
        1
        for e in state.episodes
        if e.alertname == finding.alertname and e.kb == finding.kb and e.subject == finding.subject
    )
    return Episode(
        alertname=finding.alertname,
        fingerprint=fingerprint(finding.alertname, state.device, finding.kb, sequence, finding.subject),
        kb=finding.kb,
        first_ms=finding.first_ms,
        starts_ms=finding.starts_ms,
        ends_ms=finding.ends_ms,
        host=state.host,
        os_build=finding.build or state.build,
        arch=state.arch,
        stop_code=finding.stop_code,
        subject=finding.subject,
    )


def _fleet_alertnames(catalog: Catalog) -> set[str]:
    """The alerts that make a device affected in the fleet agent's eyes."""
    return {catalog.boot_loop.alertname, catalog.silence.alertname}


def _fleet_evidence(state: DeviceState, catalog: Catalog) -> list[Evidence]:
    """Affected, recovered and relapsed transitions per KB, from the episodes sent.

    A device is affected by a KB from the start of its earliest episode counted
    for it, firing or over: read in order, that is when it first fired. A late
    record can move that start earlier while the episode still fires or after
    it ended; either way the fleet agent is told the earlier time (it counts a
    device once, at its earliest), as replay would have had it.
    """
    counted = _fleet_alertnames(catalog)
    evidence: list[Evidence] = []
    for position, entry in enumerate(state.reported):
        episodes = [e for e in state.episodes if e.kb == entry.kb and e.alertname in counted]
        if not episodes:
            continue
        firing = [e for e in episodes if e.firing]
        since = min(e.starts_ms for e in episodes)
        if entry.status == "installed":
            evidence.append(Evidence(EvidenceKind.AFFECTED, entry.kb, state.device, state.arch, since))
            if firing:
                state.reported[position] = Reported(entry.kb, "affected", since)
                continue
            # Found already over (a late install): affected, then recovered.
            ended = max(e.ends_ms for e in episodes)
            state.reported[position] = Reported(entry.kb, "recovered", since, ended)
            evidence.append(Evidence(EvidenceKind.RECOVERED, entry.kb, state.device, state.arch, ended))
            continue
        if entry.affected_ms and since < entry.affected_ms:
            evidence.append(Evidence(EvidenceKind.AFFECTED, entry.kb, state.device, state.arch, since))
            entry = state.reported[position] = replace(entry, affected_ms=since)
        # A late record can re-open an episode that ended: its relapse then starts
        # before the recovery told. Times told only move on (`Reported.said_ms`).
        if firing and entry.status == "recovered":
            when = max(min(e.starts_ms for e in firing), entry.said_ms)
            state.reported[position] = replace(entry, status="affected", said_ms=when)
            evidence.append(Evidence(EvidenceKind.RELAPSED, entry.kb, state.device, state.arch, when))
        elif not firing and entry.status == "affected":
            ended = max(max(e.ends_ms for e in episodes), entry.said_ms)
            state.reported[position] = replace(entry, status="recovered", said_ms=ended)
            evidence.append(Evidence(EvidenceKind.RECOVERED, entry.kb, state.device, state.arch, ended))
    return evidence


def said_so_far(state: DeviceState, catalog: Catalog) -> tuple[list[Alert], list[Evidence]]:
    """The device's alerts as they stand, and what `_fleet_evidence` told the fleet agent of it.

    To be sent again wherever a worker may have died after writing the state
    and before what it caused reached the broker: for a duplicate record, and
    once per partition after a restart or takeover (`Engine.tick`), since a
    tick's verdict comes with no duplicate. Alerts keep their fingerprints and
    the fleet agent counts a device's status once, so saying it again is harmless.
    """
    alerts = [device_alert(state.device, episode, catalog) for episode in state.episodes]
    counted = _fleet_alertnames(catalog)
    evidence: list[Evidence] = []
    for entry in state.reported:
        if entry.status == "installed" or not entry.affected_ms:
            continue
        evidence.append(
            Evidence(EvidenceKind.AFFECTED, entry.kb, state.device, state.arch, entry.affected_ms)
        )
        ended = [e.ends_ms for e in state.episodes if e.kb == entry.kb and e.alertname in counted]
        if entry.status == "recovered" and ended:
            told = max(*ended, entry.said_ms)  # as `_fleet_evidence` said it
            evidence.append(Evidence(EvidenceKind.RECOVERED, entry.kb, state.device, state.arch, told))
    return alerts, evidence


def _background(state: DeviceState, crashes: list[CrashBoot], catalog: Catalog) -> list[Evidence]:
    """Boot loops with no install before them, once each: the baseline's numerator."""
    rule = catalog.boot_loop
    evidence: list[Evidence] = []
    for burst in background_loops(crashes, state.installs, state.newest_ms, rule):
        if any(abs(burst.first_ms - known) <= rule.stable_ms for known in state.background_loops):
            continue
        state.background_loops = [*state.background_loops, burst.first_ms][-8:]
        evidence.append(Evidence(EvidenceKind.BACKGROUND_LOOP, "", state.device, state.arch, burst.first_ms))
    return evidence
