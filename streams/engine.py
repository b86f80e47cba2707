"""Runs the detector over stored device states: the body of the device agent.

The states live in any mutable mapping from device key to encoded state: the
Faust table in a worker, a dict in `kbwatch replay`. Both therefore run the
very same code path, which is what makes live and replay agree.

Silence needs a clock that moves without the silent device: the fleet clock
arrives as ticks, one per partition. A second mapping, `watches`, indexes the
devices waiting for a silence verdict so that a tick looks at those alone.
Each watch remembers the partition its device lives on, and a tick touches
only the watches of its own partition: Faust writes a table change to the
changelog partition of the event being processed, so a device's state must
only ever change while processing a record of its own partition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from streams import codec
from streams.alerts import Alert
from streams.catalog import Catalog
from streams.detector import (
    ClockLimits,
    Result,
    apply,
    clock_limits,
    is_expired,
    said_so_far,
    silence_deadline,
)
from streams.device import DeviceState
from streams.evidence import Evidence
from streams.metrics import Metrics, stop_code_label
from streams.signals import SeenEntry, Signal, SignalKind
from streams.timeutil import HOUR_MS
from streams.watermarks import Coverage, InputWatermarks

SWEEP_EVERY_MS = 24 * HOUR_MS
# Decoded states kept for reuse; a few batches' worth of devices, then forgotten at once.
RECENT_STATES = 4096

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Output:
    """What one step asks to send."""

    alerts: list[Alert] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    # Alerts sent again unchanged (a duplicate delivery, a restart): the worker sends
    # them, so none is lost to a crash, but they are not changes, for metrics or replay.
    resent: list[Alert] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.alerts += other.alerts
        self.evidence += other.evidence
        self.resent += other.resent


@dataclass(slots=True)
class _Clock:
    """A device's `seen` within a batch that only moved its clock: noted here, folded into its state once."""

    state: DeviceState  # the state they apply to, as it was when the first of them came
    limits: ClockLimits
    newest_ms: int
    host: str


class Engine:
    """Applies signals and ticks to device states and counts what happened."""

    def __init__(
        self,
        states: MutableMapping[str, bytes],
        catalog: Catalog,
        metrics: Metrics,
        watches: MutableMapping[str, bytes] | None = None,
    ) -> None:
        self.states = states
        self.watches: MutableMapping[str, bytes] = watches if watches is not None else {}
        self.catalog = catalog
        self.metrics = metrics
        # The newest fleet clock seen: it expires idle devices in event time.
        self.fleet_time_ms = 0
        self._swept_day: dict[int, int] = {}
        self._partition_time: dict[int, int] = {}  # partition -> fleet time of its last tick
        self._inputs: dict[int, InputWatermarks] = {}  # partition -> what each sieve's ticks said
        self._said_again: set[int] = set()  # partitions whose devices' alerts and facts were sent again
        # The signals partitions this worker's agent owns (None: all, as in replay). The
        # table also holds standby copies of other workers' partitions, which may lag.
        self._owned: set[int] | None = None
        self._tracked: int | None = None  # counted lazily: len() of a RocksDB table walks it
        # Each device's last stored encoding and the state it encodes: a device
        # named again soon (a `seen_many` names it several times) skips the decode.
        self._recent: dict[str, tuple[bytes, DeviceState]] = {}
        # Inside a batch (`process_many`, `process_seen`): each device's newest state,
        # encoded and written once at the end.
        self._unwritten: dict[str, DeviceState] | None = None
        self._signal_counters: dict[tuple[SignalKind, str], Any] = {}
        # Inside a batch: each labelled counter's signals, added to it once at the end.
        self._signal_counts: dict[Any, int] | None = None
        # Inside a batch: the devices whose `seen` have only moved their clocks so far.
        self._clocks: dict[str, _Clock] | None = None
        # Inside a batch: the devices found without state in the table (emptied after each).
        self._stateless: set[str] = set()

    def _signal_counter(self, kind: SignalKind, outcome: str) -> Any:
        # A labelled child looked up each time costs as much as applying a `seen`.
        counter = self._signal_counters.get((kind, outcome))
        if counter is None:
            counter = self._signal_counters[kind, outcome] = self.metrics.signals.labels(kind.value, outcome)
        return counter

    def _count_signal(self, kind: SignalKind, outcome: str) -> None:
        counter = self._signal_counter(kind, outcome)
        counts = self._signal_counts
        if counts is None:
            counter.inc()
        else:
            # An increment takes the metric's lock and three calls: once per batch, not per `seen`.
            counts[counter] = counts.get(counter, 0) + 1

    def _full(self) -> bool:
        if self._tracked is None:
            self._tracked = len(self.states)
        return self._tracked >= self.catalog.limits.max_devices

    def process(self, signal: Signal, partition: int = 0) -> Output:
        """Apply one device signal; return the alerts and evidence it caused."""
        unwritten = self._unwritten.get(signal.device) if self._unwritten is not None else None
        if unwritten is not None:
            return self._apply(signal, partition, unwritten, new_device=False)
        stored = self.states.get(signal.device)
        if stored is None and (signal.kind is SignalKind.SEEN or self._full()):
            # A device known only from noise needs no state: nothing of it can
            # fire or wait. This also keeps a flood of invented device names
            # from growing the table; past `max_devices`, new ones are refused.
            self._count_signal(signal.kind, "seen" if signal.kind is SignalKind.SEEN else "refused")
            return Output()
        return self._apply(signal, partition, self._state_of(signal.device, stored), stored is None)

    def _apply(self, signal: Signal, partition: int, state: DeviceState | None, new_device: bool) -> Output:
        """`process` once the device's state is known (None: none, or one that could not be read)."""
        if state is not None and is_expired(state, signal.time_ms, self.catalog):
            # As if swept: whether the sweep got to it first depends on timing,
            # and what a record finds must depend on event time alone.
            state = None
            if signal.kind is SignalKind.SEEN:
                self._forget([signal.device])
                self._count_signal(signal.kind, "seen")
                return Output()
        if state is not None:
            state.partition = partition
        result = apply(state, signal, self.catalog)
        result.state.partition = partition
        self._store(result, new_device)
        self._count_signal(signal.kind, result.applied.value)
        if result.new_crash_boots:
            self.metrics.crash_boots.inc(result.new_crash_boots)
        return self._count(result)

    def process_many(self, signals: Iterable[Signal], partition: int = 0) -> Output:
        """`process` each signal in turn, writing each device's state once at the end.

        A `seen_many` names a device as often as the batch held its ten-minute
        buckets, and every table write is a changelog record: through a
        write-back view the states and watches change exactly as with one
        `process` per signal, for one write per device. Each device's state is
        also encoded once, at the end, not after every signal: the next signal
        of the device takes the state as it was left. A `seen` that can only
        move its device's clock and names (`ClockLimits`, most of them) is noted
        beside the state and folded into it once, when the device's next other
        signal comes or at the end. The signals are counted in
        `kbwatch_signals_total` once at the end too.
        """
        return self._batch(signals, partition)

    def process_seen(self, entries: Iterable[SeenEntry], partition: int = 0) -> Output:
        """A `seen_many`'s entries (device, time_ms, host): `process_many` of their `seen`
        signals, without making a `Signal` of each."""
        return self._batch(entries, partition)

    def _batch(self, items: Iterable[Signal | SeenEntry], partition: int) -> Output:
        states, watches = self.states, self.watches
        staged_states, staged_watches = WriteBack(states), WriteBack(watches)
        self.states, self.watches = staged_states, staged_watches
        self._unwritten = {}
        self._signal_counts = {}
        self._clocks = {}
        output = Output()
        process, seen = self.process, self._seen
        try:
            for item in items:
                if isinstance(item, tuple):
                    step = seen(item[0], item[1], item[2], partition)
                elif item.kind is SignalKind.SEEN:
                    step = seen(item.device, item.time_ms, item.host, partition)
                else:
                    self._settle(item.device, partition)
                    step = process(item, partition)
                if step is not None and (step.alerts or step.evidence or step.resent):
                    output.extend(step)
        finally:
            for device in list(self._clocks):
                self._settle(device, partition)
            self._clocks = None
            self._stateless.clear()
            unwritten, self._unwritten = self._unwritten, None
            counts, self._signal_counts = self._signal_counts, None
            for state in unwritten.values():
                self._write(state)
            self.states, self.watches = states, watches
            staged_states.flush()
            staged_watches.flush()
            for counter, count in counts.items():
                counter.inc(count)
        return output

    def _seen(self, device: str, time_ms: int, host: str, partition: int) -> Output | None:
        """A `seen` inside a batch: noted beside its device's state when that is all it can do."""
        assert self._clocks is not None and self._unwritten is not None
        clock = self._clocks.get(device)
        if clock is None:
            state = self._unwritten.get(device)
            if state is None:
                # As `process` finds: a device without state keeps nothing of a `seen`. Looked up
                # once per batch (a miss in a Faust table goes through a KeyError); a signal that
                # gives it a state later in the batch leaves that state in `_unwritten`.
                stored = None if device in self._stateless else self.states.get(device)
                if stored is None:
                    self._stateless.add(device)
                    self._count_signal(SignalKind.SEEN, "seen")
                    return None
                state = self._state_of(device, stored)
            limits = clock_limits(state, self.catalog) if state is not None else None
            if state is not None and limits is not None:
                clock = self._clocks[device] = _Clock(state, limits, state.newest_ms, state.host)
        # Not idle past the limit either: `process` would forget such a device (`_apply`).
        if (
            clock is not None
            and time_ms - clock.newest_ms <= self.catalog.limits.idle_device_ttl_ms
            and clock.limits.allow(time_ms, clock.newest_ms)
        ):
            # `detector._note_device`, for a signal that names no build or architecture.
            if time_ms >= clock.newest_ms:
                clock.newest_ms = time_ms
                clock.host = host or clock.host
            elif not clock.host:
                clock.host = host
            self._count_signal(SignalKind.SEEN, "seen")
            return None
        self._settle(device, partition)
        signal = Signal(device=device, kind=SignalKind.SEEN, time_ms=time_ms, host=host)
        return self.process(signal, partition)

    def _settle(self, device: str, partition: int) -> None:
        """Fold the clock noted for `device` (if any) into its state, for what comes next."""
        assert self._clocks is not None and self._unwritten is not None
        clock = self._clocks.pop(device, None)
        if clock is None:
            return
        state = clock.state
        if clock.newest_ms != state.newest_ms or clock.host != state.host or state.partition != partition:
            state = replace(state, newest_ms=clock.newest_ms, host=clock.host, partition=partition)
        self._unwritten[device] = state

    def tick(self, fleet_ms: int, partition: int = 0, coverage: Coverage | None = None) -> Output:
        """The fleet clock reached `fleet_ms`: judge the silences due on `partition`.

        With `coverage`, the tick is one sieve's clock for its own input
        partitions, and `partition` moves on only as far as every input
        partition has been read (`streams.watermarks`).
        """
        output = Output()
        if partition not in self._said_again:
            # The first tick of partitions taken, whatever time it brings.
            output.extend(self._say_again())
            self._said_again.add(partition)
        if coverage is not None:
            inputs = self._inputs.setdefault(partition, InputWatermarks())
            fleet_ms = inputs.report(fleet_ms, coverage)
            if fleet_ms <= self._partition_time.get(partition, 0):
                return output  # nothing new for this partition: the slowest input holds it
        self.fleet_time_ms = max(self.fleet_time_ms, fleet_ms)
        self.metrics.fleet_clock.set(self.fleet_time_ms / 1000)
        # Each partition's agent runs at its own pace: its devices are judged
        # by the ticks it has read, never by another partition's.
        self._partition_time[partition] = max(self._partition_time.get(partition, 0), fleet_ms)
        due = []
        for device, stored in list(self.watches.items()):
            deadline, watch_partition = codec.loads(stored)
            if watch_partition == partition and deadline <= fleet_ms:
                due.append(device)
        for device in due:
            state_bytes = self.states.get(device)
            if state_bytes is None:
                del self.watches[device]
                continue
            signal = Signal(device=device, kind=SignalKind.TICK, time_ms=fleet_ms)
            result = apply(_decoded(state_bytes), signal, self.catalog)
            self._store(result, False)
            output.extend(self._count(result))
        self._maybe_sweep(partition)
        # After this partition's evidence up to the tick: the fleet agent's cue.
        output.evidence.append(Evidence.progress(partition, fleet_ms))
        return output

    def taken_over(self, partitions: Iterable[int]) -> None:
        """The partitions now assigned: their devices' alerts and facts go out again at their next tick.

        Only these: a standby copy of another worker's partition can be behind its
        owner's, and sending its alerts again would bring back a resolved alert as
        firing.
        """
        self._owned = set(partitions)
        self._said_again.difference_update(self._owned)

    def _say_again(self) -> Output:
        """Every alert and fleet fact of the devices of partitions just taken, sent again once.

        The worker that wrote these states (this one before a restart, or another
        one before a takeover) may have died before what they caused reached the
        broker. A record that comes again finds itself counted and says it again
        (`said_so_far`), but a silence verdict comes from a tick, which nothing
        brings back. So the first tick after taking partitions says it all again:
        one walk of the table for all of them (it decodes every state, as a sweep does).
        The walk also sets each device's silence watch again: it is a record on
        another changelog, which a crash can have cut off after the state's.
        """
        output = Output()
        taken: set[int] = set()
        for stored in self.states.values():  # read only: no copy of a large table
            state = _decoded(stored)
            if state is None or state.partition in self._said_again:
                continue
            if self._owned is not None and state.partition not in self._owned:
                continue  # a standby copy: its owner says it
            taken.add(state.partition)
            self._watch(state)
            if state.episodes or state.reported:
                resent, evidence = said_so_far(state, self.catalog)
                output.resent += resent
                output.evidence += evidence
        self._said_again |= taken
        self.metrics.alerts_resent.inc(len(output.resent))
        return output

    def sweep(self, partition: int | None = None) -> int:
        """Forget idle devices far behind the fleet clock (of their partition); return how many."""
        fleet_ms = self.fleet_time_ms if partition is None else self._partition_time.get(partition, 0)
        expired = []
        for device, stored in list(self.states.items()):
            state = _decoded(stored)
            if state is None:
                continue  # its partition is unknown: its next signal replaces it
            if (partition is None or state.partition == partition) and is_expired(
                state, fleet_ms, self.catalog
            ):
                expired.append(device)
        self._forget(expired)
        self._tracked = len(self.states)
        self.metrics.devices_tracked.set(self._tracked)
        return len(expired)

    def _forget(self, devices: list[str]) -> None:
        for device in devices:
            if self._unwritten is not None:
                self._unwritten.pop(device, None)
            self.states.pop(device, None)  # absent if it came to be within this `process_many`
            self.watches.pop(device, None)
        self.metrics.devices_expired.inc(len(devices))
        if self._tracked is not None:
            self._tracked -= len(devices)
            self.metrics.devices_tracked.dec(len(devices))

    def _maybe_sweep(self, partition: int) -> None:
        # A sweep decodes every state: once per day of fleet time per partition
        # is plenty against a 14-day idle limit.
        day = self._partition_time.get(partition, 0) // SWEEP_EVERY_MS
        if self._swept_day.get(partition, day) < day:
            self.sweep(partition)
        self._swept_day[partition] = day

    def _state_of(self, device: str, stored: bytes | None) -> DeviceState | None:
        """`stored` decoded, or the state it was encoded from when this engine stored it.

        The detector never changes a state it is given (it works on a copy; only
        `partition`, which `process` sets anyway, is written on it), and a state
        decodes to what was encoded (tests/test_engine_batches.py). Comparing the
        bytes keeps this right when the table changed behind the engine (a
        rebalance, a sweep): those bytes then differ and are decoded.
        """
        recent = self._recent.get(device)
        if recent is not None and recent[0] == stored:
            return recent[1]
        return _decoded(stored)

    def _store(self, result: Result, new_device: bool) -> None:
        state = result.state
        if new_device and self._tracked is not None:
            self._tracked += 1
            self.metrics.devices_tracked.inc()
        if self._unwritten is not None:
            self._unwritten[state.device] = state  # written by `process_many`, once
        else:
            self._write(state)

    def _write(self, state: DeviceState) -> None:
        """Encode a device's state into the table and its silence watch into the watches."""
        encoded = state.to_wire()
        self.states[state.device] = encoded
        if len(self._recent) >= RECENT_STATES:
            self._recent.clear()
        self._recent[state.device] = (encoded, state)
        self._watch(state)

    def _watch(self, state: DeviceState) -> None:
        """Set or clear the device's silence watch to match its state."""
        deadline = silence_deadline(state, self.catalog)
        watched = self.watches.get(state.device)
        if deadline:
            wanted = codec.dumps([deadline, state.partition])
            if watched != wanted:
                self.watches[state.device] = wanted
        elif watched is not None:
            del self.watches[state.device]

    def _count(self, result: Result) -> Output:
        for alert in result.alerts:
            self.metrics.alerts.labels(
                alert.labels["alertname"], alert.labels["severity"], alert.status
            ).inc()
        for episode in result.new_boot_loops:
            self.metrics.boot_loops.labels(stop_code_label(episode.stop_code)).inc()
        if result.resent:
            self.metrics.alerts_resent.inc(len(result.resent))
        return Output(result.alerts, result.evidence, result.resent)


class WriteBack(MutableMapping[str, bytes]):
    """A view of a mapping that keeps its changes until `flush` writes each key once."""

    def __init__(self, base: MutableMapping[str, bytes]) -> None:
        self._base = base
        self._staged: dict[str, bytes | None] = {}  # None: deleted

    def __getitem__(self, key: str) -> bytes:
        if key not in self._staged:
            return self._base[key]
        value = self._staged[key]
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        # Not Mapping's: a device without state is common, and a KeyError costs.
        if key not in self._staged:
            return self._base.get(key, default)
        value = self._staged[key]
        return default if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        self._staged[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._staged[key] = None

    def __iter__(self) -> Iterator[str]:
        yield from (key for key in self._base if key not in self._staged)
        yield from (key for key, value in self._staged.items() if value is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> None:
        """Write what changed to the base mapping, once per key."""
        for key, value in self._staged.items():
            if value is None:
                self._base.pop(key, None)
            elif self._base.get(key) != value:
                self._base[key] = value
        self._staged.clear()


def _decoded(stored: bytes | None) -> DeviceState | None:
    """A stored state, or None when it cannot be read (an older layout after an upgrade):
    that device then starts afresh rather than stopping the agent."""
    if stored is None:
        return None
    try:
        return DeviceState.from_wire(stored)
    except (ValueError, KeyError, TypeError, IndexError) as error:
        log.warning("a device state could not be read (%s); starting it afresh", error)
        return None
