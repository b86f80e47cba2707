"""The device detector: (state, signal) -> (state, alerts), in event time.

This is the one function both the live device agent and `kbwatch replay`
call. It inserts the signal into the device's bounded state, re-derives the
rule's episodes from that state, and returns an alert for every episode whose
sent form changed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from streams.alerts import Alert, boot_loop_alert, fingerprint
from streams.boots import crash_boots
from streams.catalog import Catalog
from streams.device import DeviceState, Episode, Install, Marker
from streams.rules.boot_loop import BootLoop, boot_loops
from streams.signals import Signal, SignalKind


class Applied(StrEnum):
    """What a signal did to the state; values are `outcome` metric labels."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    SEEN = "seen"


@dataclass(frozen=True, slots=True)
class Result:
    """A detector step: the new state, the alerts to send, and metric facts."""

    state: DeviceState
    alerts: list[Alert]
    applied: Applied
    new_crash_boots: int


def apply(state: DeviceState | None, signal: Signal, catalog: Catalog) -> Result:
    """Fold one signal into a device's state and say which alerts changed."""
    current = _copy(state) if state is not None else DeviceState(device=signal.device)
    _note_device(current, signal)
    limits = catalog.limits
    if signal.kind is SignalKind.SEEN:
        applied = Applied.SEEN
        crashes_before = -1
    elif signal.kind is SignalKind.INSTALL:
        applied = _add_install(current, signal, catalog)
        crashes_before = -1
    else:
        if signal.time_ms < current.newest_ms - limits.marker_retention_ms:
            return Result(current, [], Applied.TOO_LATE, 0)
        crashes_before = len(crash_boots(current.markers))
        applied = _add_marker(current, signal)
    _prune(current, catalog)
    if applied in (Applied.DUPLICATE, Applied.TOO_LATE):
        return Result(current, [], applied, 0)
    if applied is Applied.SEEN and not current.firing():
        return Result(current, [], applied, 0)
    crashes = crash_boots(current.markers)
    new_crash_boots = max(0, len(crashes) - crashes_before) if crashes_before >= 0 else 0
    loops = boot_loops(crashes, current.installs, current.newest_ms, catalog.boot_loop)
    alerts = _reconcile(current, loops, catalog)
    return Result(current, alerts, applied, new_crash_boots)


def is_expired(state: DeviceState, fleet_time_ms: int, catalog: Catalog) -> bool:
    """An idle device far behind the fleet's event time can be forgotten."""
    idle = fleet_time_ms - state.newest_ms > catalog.limits.idle_device_ttl_ms
    return idle and not state.firing()


def _copy(state: DeviceState) -> DeviceState:
    return replace(
        state,
        markers=list(state.markers),
        installs=list(state.installs),
        episodes=list(state.episodes),
    )


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


def _add_marker(state: DeviceState, signal: Signal) -> Applied:
    key = signal.record_key or f"{signal.kind.value}@{signal.time_ms}/{signal.stop_code}"
    if any(marker.record_key == key for marker in state.markers):
        return Applied.DUPLICATE
    state.markers.append(Marker(signal.time_ms, signal.kind, signal.stop_code, key))
    return Applied.COUNTED


def _add_install(state: DeviceState, signal: Signal, catalog: Catalog) -> Applied:
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
                return Applied.COUNTED
            return Applied.DUPLICATE
    state.installs.append(Install(signal.time_ms, signal.kb, signal.build, signal.source))
    return Applied.COUNTED


def _prune(state: DeviceState, catalog: Catalog) -> None:
    limits = catalog.limits
    horizon = state.newest_ms - limits.marker_retention_ms
    markers = sorted(marker for marker in state.markers if marker.time_ms >= horizon)
    state.markers = markers[-limits.max_markers :]
    install_horizon = state.newest_ms - limits.install_retention_ms
    installs = sorted(
        (install for install in state.installs if install.time_ms >= install_horizon),
        key=lambda install: (install.time_ms, install.kb),
    )
    state.installs = installs[-limits.max_installs :]
    episode_horizon = state.newest_ms - limits.episode_retention_ms
    kept = [e for e in state.episodes if e.firing or e.ends_ms >= episode_horizon]
    state.episodes = kept[-limits.max_episodes :]


def _reconcile(state: DeviceState, loops: list[BootLoop], catalog: Catalog) -> list[Alert]:
    """Match derived loops to sent episodes; return the alerts for what changed.

    A loop overlapping a sent episode is that episode: it may start earlier
    (a late record), end, or re-open, but keeps its fingerprint and labels.
    """
    rule = catalog.boot_loop
    alerts: list[Alert] = []
    for loop in loops:
        index = _matching_episode(state.episodes, rule.alertname, loop)
        if index is None:
            episode = _new_episode(state, loop, rule.alertname)
            state.episodes.append(episode)
            alerts.append(boot_loop_alert(state.device, replace(episode, ends_ms=0), rule))
            if not episode.firing:
                alerts.append(boot_loop_alert(state.device, episode, rule))
            continue
        sent = state.episodes[index]
        updated = replace(
            sent,
            first_ms=min(sent.first_ms, loop.first_ms),
            starts_ms=min(sent.starts_ms, loop.starts_ms),
            ends_ms=loop.ends_ms,
        )
        if updated != sent:
            state.episodes[index] = updated
            alerts.append(boot_loop_alert(state.device, updated, rule))
    return alerts


def _matching_episode(episodes: list[Episode], alertname: str, loop: BootLoop) -> int | None:
    loop_end = loop.ends_ms or 2**62
    for index, episode in enumerate(episodes):
        if episode.alertname != alertname:
            continue
        episode_end = episode.ends_ms or 2**62
        if episode.first_ms <= loop_end and loop.first_ms <= episode_end:
            return index
    return None


def _new_episode(state: DeviceState, loop: BootLoop, alertname: str) -> Episode:
    kb = loop.install.kb
    sequence = sum(1 for e in state.episodes if e.alertname == alertname and e.kb == kb)
    return Episode(
        alertname=alertname,
        fingerprint=fingerprint(alertname, state.device, kb, sequence),
        kb=kb,
        first_ms=loop.first_ms,
        starts_ms=loop.starts_ms,
        ends_ms=loop.ends_ms,
        host=state.host,
        os_build=loop.install.build or state.build,
        arch=state.arch,
        stop_code=loop.stop_code,
    )
