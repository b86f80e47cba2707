"""A `seen_many` applied through the write-back view equals one `process` per signal."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Iterator, MutableMapping
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.catalog import Catalog, StateLimits
from streams.detector import _ages_out_at, _clock_only, _copy, _prune, apply, fold
from streams.device import DeviceState, Episode, Reported
from streams.engine import Engine, Output, WriteBack
from streams.metrics import Metrics
from streams.sieve import Sieve
from streams.signals import SeenBatch, Signal, SignalKind
from streams.simulate import FleetPlan, spring_2025
from streams.timeutil import HOUR_MS, MINUTE_MS
from tests.builders import DEVICE, T0, app_crash, crash_boot_signals, hello, install, restart, seen


class CountingStore(MutableMapping[str, bytes]):
    """A dict that counts writes: each is a changelog record in a worker."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.writes: Counter[str] = Counter()

    def __getitem__(self, key: str) -> bytes:
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes[key] += 1
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.writes[key] += 1
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def fleet_signals(devices: int) -> list[Signal]:
    """The simulated fleet's signals, as the sieve makes them, in stream order."""
    stream, _ = spring_2025(FleetPlan(devices=devices, noise_per_hour=12.0))
    sieve = Sieve(1 << 20)
    signals = []
    for record in stream:
        for result in sieve.sift(record.source, record.value):
            signal = result.signal
            if signal is not None:
                signals.append(signal)
    return signals


def run(signals: list[Signal], batched: bool, rng: random.Random) -> tuple[Engine, CountingStore, Output]:
    """Every signal through one engine: one by one, or runs of `seen` as a `seen_many` is."""
    store, watches = CountingStore(), CountingStore()
    engine = Engine(store, Catalog(), Metrics.create(), watches)
    output, index = Output(), 0
    while index < len(signals):
        signal = signals[index]
        if batched and signal.kind is SignalKind.SEEN:
            run_end = index
            while run_end < len(signals) and signals[run_end].kind is SignalKind.SEEN:
                run_end += 1
            size = min(run_end - index, rng.randint(1, 400))
            output.extend(engine.process_many(signals[index : index + size], partition=0))
            index += size
        else:
            output.extend(engine.process(signal, partition=0))
            index += 1
    return engine, store, output


@pytest.mark.parametrize("seed", [1, 2])
def test_a_fleet_through_seen_batches_ends_as_one_signal_at_a_time_with_fewer_writes(seed):
    signals = fleet_signals(devices=60)
    assert sum(signal.kind is SignalKind.SEEN for signal in signals) > 1000
    one, one_store, one_output = run(signals, batched=False, rng=random.Random(seed))
    many, many_store, many_output = run(signals, batched=True, rng=random.Random(seed))
    assert many_store.data == one_store.data
    assert dict(many.watches) == dict(one.watches)
    assert [alert.to_wire() for alert in many_output.alerts] == [a.to_wire() for a in one_output.alerts]
    assert many_output.evidence == one_output.evidence
    assert many_output.alerts  # the fleet's incidents fired
    assert sum(many_store.writes.values()) < sum(one_store.writes.values()) / 2
    # A batch adds its signals to `kbwatch_signals_total` once, at its end: the same counts.
    assert signal_counts(many) == signal_counts(one)
    assert signal_counts(one)["seen", "seen"] > 1000


def signal_counts(engine: Engine) -> dict[tuple[str, str], float]:
    """`kbwatch_signals_total` by (kind, outcome), as the engine counted them."""
    (family,) = engine.metrics.signals.collect()
    return {
        (sample.labels["kind"], sample.labels["outcome"]): sample.value
        for sample in family.samples
        if sample.name.endswith("_total") and sample.value
    }


@pytest.mark.parametrize("seed", [3, 4])
def test_a_seen_many_that_leaves_out_repeats_ends_as_applying_every_repeat(seed):
    # What an unkeyed input does: each run of `seen` arrives once per input
    # partition, shuffled together; the sieve sends each entry once.
    rng = random.Random(seed)
    repeated: list[Signal] = []
    runs: list[list[Signal]] = []
    for signal in fleet_signals(devices=60):
        if signal.kind is SignalKind.SEEN:
            if not runs or runs[-1][-1].kind is not SignalKind.SEEN:
                runs.append([])
            runs[-1].append(signal)
        else:
            runs.append([signal])
    for run_ in runs:
        if run_[0].kind is SignalKind.SEEN:
            copies = run_ + [rng.choice(run_) for _ in range(2 * len(run_))]
            rng.shuffle(copies)
            repeated += copies
        else:
            repeated += run_
    every, every_store, every_output = run(repeated, batched=False, rng=rng)
    store, watches = CountingStore(), CountingStore()
    once = Engine(store, Catalog(), Metrics.create(), watches)
    once_output = Output()
    index = 0
    while index < len(repeated):
        end = index + 1
        if repeated[index].kind is SignalKind.SEEN:
            while end < len(repeated) and repeated[end].kind is SignalKind.SEEN:
                end += 1
            batch = SeenBatch(partitions=1)
            kept = [batch.add(signal) for signal in repeated[index:end]]
            assert not all(kept)
            ((_, message),) = batch.messages()
            once_output.extend(once.process_seen(message.seen, partition=0))
        else:
            once_output.extend(once.process(repeated[index], partition=0))
        index = end
    assert store.data == every_store.data
    assert dict(once.watches) == dict(every.watches)
    assert [alert.to_wire() for alert in once_output.alerts] == [a.to_wire() for a in every_output.alerts]
    assert once_output.evidence == every_output.evidence
    assert once_output.alerts


def test_every_state_the_fleet_stores_decodes_to_the_state_it_was_encoded_from():
    # What lets the engine reuse the state it stored instead of decoding it again.
    store, watches = CountingStore(), CountingStore()
    engine = Engine(store, Catalog(), Metrics.create(), watches)
    checked = 0
    for signal in fleet_signals(devices=60):
        engine.process(signal, partition=0)
        stored = store.data.get(signal.device)
        if stored is not None:
            assert DeviceState.from_wire(stored).to_wire() == stored
            assert DeviceState.from_wire(stored) == engine._recent[signal.device][1]
            checked += 1
    assert checked > 1000


def test_a_device_that_expires_within_a_batch_is_forgotten_and_stays_forgotten():
    store, watches = CountingStore(), CountingStore()
    engine = Engine(store, Catalog(), Metrics.create(), watches)
    engine.process(install(T0))
    assert DEVICE in store
    idle = Catalog().limits.idle_device_ttl_ms
    seen = [
        Signal(device=DEVICE, kind=SignalKind.SEEN, time_ms=T0 + idle + offset * HOUR_MS) for offset in (1, 2)
    ]
    assert engine.process_many(seen) == Output()
    assert DEVICE not in store
    assert store.writes[DEVICE] == 2  # the install, then one deletion for the whole batch


def test_the_write_back_view_reads_its_own_writes_and_deletions():
    base = CountingStore()
    base["a"], base["b"] = b"1", b"2"
    view = WriteBack(base)
    view["a"] = b"3"
    del view["b"]
    view["c"] = b"4"
    assert (view.get("a"), view.get("b"), view["c"], "b" in view) == (b"3", None, b"4", False)
    assert sorted(view) == ["a", "c"] and len(view) == 2
    with pytest.raises(KeyError):
        view["b"]
    assert base.data == {"a": b"1", "b": b"2"}  # nothing written yet
    view["a"] = b"1"  # back to what the base holds: no write at all
    view.flush()
    assert base.data == {"a": b"1", "c": b"4"}
    assert base.writes == Counter({"a": 1, "b": 2, "c": 1})


@pytest.mark.parametrize("seed", [5, 6])
def test_a_seen_that_only_moves_the_clock_takes_the_quick_path_to_the_full_paths_result(seed):
    # Every `seen` is applied both ways to the same state; the fleet's records
    # come with delivery jitter and some `seen`s are held back up to an hour,
    # so late ones reach restarts awaiting their return and older clocks.
    rng = random.Random(seed)
    signals = fleet_signals(devices=60)
    late = [signal for signal in signals if signal.kind is SignalKind.SEEN and rng.random() < 0.2]
    held = {id(signal) for signal in late}
    ordered = [signal for signal in signals if id(signal) not in held]
    for signal in late:
        at = next(
            (i for i, s in enumerate(ordered) if s.time_ms > signal.time_ms + rng.randint(0, HOUR_MS)), None
        )
        ordered.insert(len(ordered) if at is None else at, signal)
    catalog = Catalog()
    states: dict[str, DeviceState] = {}
    quick = full = 0
    for signal in ordered:
        state = states.get(signal.device)
        result = fold(state, signal, catalog)
        if signal.kind is SignalKind.SEEN and state is not None:
            shortcut = _clock_only(state, signal, catalog)
            if shortcut is None:
                full += 1
            else:
                assert shortcut == result
                quick += 1
        states[signal.device] = result.state
    assert quick > 10 * full > 0


def _folded(signals: list[Signal]) -> DeviceState:
    state = None
    for signal in signals:
        state = fold(state, signal, Catalog()).state
    assert state is not None
    return state


RESTART_AT = T0 + 6 * HOUR_MS
BOOTED = [install(T0), *crash_boot_signals(T0 + HOUR_MS, 3)]


@pytest.mark.parametrize(
    ("history", "late", "quick"),
    [
        # A restart that came back at +40 min: a `seen` of +20 min is its earlier return.
        (
            [install(T0), restart(RESTART_AT, 7), seen(RESTART_AT + 40 * MINUTE_MS)],
            RESTART_AT + 20 * MINUTE_MS,
            False,
        ),
        # The same `seen` inside the restart's own shutdown grace changes nothing.
        (
            [install(T0), restart(RESTART_AT, 7), seen(RESTART_AT + 40 * MINUTE_MS)],
            RESTART_AT + MINUTE_MS,
            True,
        ),
        # A boot record ages out of retention (48 h) once the clock passes it.
        ([*BOOTED, seen(T0 + 49 * HOUR_MS - MINUTE_MS)], T0 + 49 * HOUR_MS + MINUTE_MS, False),
        ([*BOOTED, seen(T0 + 49 * HOUR_MS - MINUTE_MS)], T0 + 49 * HOUR_MS - 30_000, True),
    ],
)
def test_the_quick_path_declines_exactly_what_it_cannot_do(history, late, quick):
    state = replace(_folded(history), host="PC-00042")
    signal = replace(seen(late), host="PC-RENAMED")  # an older record keeps the newer name
    shortcut = _clock_only(state, signal, Catalog())
    assert (shortcut is not None) == quick
    assert apply(state, signal, Catalog()) == fold(state, signal, Catalog())


def test_a_seen_that_notes_nothing_new_leaves_the_state_as_it_is():
    state = replace(_folded([install(T0), seen(T0 + HOUR_MS)]), host="PC-00042")
    again = replace(seen(T0 + HOUR_MS), host="PC-00042")
    older = replace(seen(T0 + 30 * MINUTE_MS), host="PC-OLDER")  # an older name is not taken
    renamed = replace(seen(T0 + HOUR_MS), host="PC-RENAMED")  # a name as new as the state's is
    for signal in (again, older):
        shortcut = _clock_only(state, signal, Catalog())
        assert shortcut is not None and shortcut.state is state
        assert shortcut == fold(state, signal, Catalog())
    shortcut = _clock_only(state, renamed, Catalog())
    assert shortcut is not None and shortcut.state is not state
    assert shortcut.state.host == "PC-RENAMED" == fold(state, renamed, Catalog()).state.host


HISTORIES = {
    "installed": [install(T0)],
    "back from a restart": [install(T0), restart(RESTART_AT, 7), seen(RESTART_AT + 40 * MINUTE_MS)],
    "awaiting a return": [install(T0), restart(RESTART_AT, 7)],
    "boot loop firing": BOOTED,
    "crashes ageing out": [*BOOTED[:3], seen(T0 + 49 * HOUR_MS - MINUTE_MS)],
    "unknown": [],
}
# The name each history's records carry: a device whose collector sent none yet has no name.
HISTORY_HOSTS = {"installed": ""}
IDLE_MS = Catalog().limits.idle_device_ttl_ms


@settings(max_examples=400, deadline=None)
@given(
    history=st.sampled_from(sorted(HISTORIES)),
    entries=st.lists(
        st.tuples(
            st.one_of(
                st.integers(-120, 80 * 60).map(lambda offset: T0 + offset * MINUTE_MS),
                st.sampled_from([T0 + IDLE_MS + 50 * HOUR_MS, T0 + IDLE_MS + 3 * HOUR_MS]),
            ),
            st.sampled_from(["", "PC-00042", "PC-RENAMED"]),
        ),
        max_size=12,
    ),
    install_at=st.one_of(st.none(), st.integers(0, 12)),
)
def test_a_seen_many_noted_beside_the_state_ends_as_one_seen_at_a_time(history, entries, install_at):
    # Names that change, times older, as old and newer than the clock, inside a
    # restart's return, past an epoch, a retention or the idle limit; and, in
    # `process_many`, an install among them (which gives an unknown device a state).
    def engine() -> tuple[Engine, CountingStore, CountingStore]:
        store, watches = CountingStore(), CountingStore()
        built = Engine(store, Catalog(), Metrics.create(), watches)
        for signal in HISTORIES[history]:
            built.process(replace(signal, host=HISTORY_HOSTS.get(history, "PC-00042")), partition=0)
        return built, store, watches

    batched, batched_store, batched_watches = engine()
    one, one_store, one_watches = engine()
    noted = [(DEVICE, time_ms, host) for time_ms, host in entries]
    signals = [Signal(device=device, kind=SignalKind.SEEN, time_ms=t, host=host) for device, t, host in noted]
    if install_at is None:
        batched_output = batched.process_seen(noted, partition=0)
    else:
        signals.insert(install_at, install(T0 + 20 * HOUR_MS))
        batched_output = batched.process_many(signals, partition=0)
    one_output = Output()
    for signal in signals:
        one_output.extend(one.process(signal, partition=0))
    assert batched_store.data == one_store.data
    assert batched_watches.data == one_watches.data
    assert [a.to_wire() for a in batched_output.alerts] == [a.to_wire() for a in one_output.alerts]
    assert (batched_output.evidence, batched_output.resent) == (one_output.evidence, one_output.resent)
    assert signal_counts(batched) == signal_counts(one)


# Small bounds, so that every kind of entry can age out within a generated history.
SMALL = Catalog(
    limits=StateLimits(
        marker_retention_ms=2 * HOUR_MS,
        max_markers=6,
        max_hello_markers=3,
        max_app_crashes=3,
        max_restarts=2,
        max_installs=2,
        install_retention_ms=5 * HOUR_MS,
        episode_retention_ms=4 * HOUR_MS,
        max_episodes=2,
    )
)


def _history(draw_kinds: list[int], offsets: list[int]) -> list[Signal]:
    """Signals of many kinds at the given minutes after T0: installs of three KBs, crash boots,
    boot loops (which resolve after six crash-free hours), Hello failures, app crashes and
    restarts that came back."""
    signals: list[Signal] = []
    for number, (kind, offset) in enumerate(zip(draw_kinds, offsets, strict=False)):
        at = T0 + offset * MINUTE_MS
        if kind == 0:
            signals.append(install(at, kb=f"KB50{number % 3}"))
        elif kind == 1:
            signals += crash_boot_signals(at, 100 + number)
        elif kind == 2:
            signals.append(hello(at, 200 + number))
        elif kind == 3:
            signals.append(app_crash(at, 300 + number))
        elif kind == 5:
            signals.append(install(at, kb=f"KB50{number % 3}"))
            for crash in range(3):
                signals += crash_boot_signals(
                    at + (5 + 10 * crash) * MINUTE_MS, 500 + 10 * number + 3 * crash
                )
        else:
            signals += [restart(at, 400 + number), seen(at + 5 * MINUTE_MS)]
    return signals


def _prune_changes(state: DeviceState, newest_ms: int, catalog: Catalog) -> bool:
    """What `_ages_out_at` stands for: would pruning at `newest_ms` change a list of `state`?"""
    pruned = _copy(state)
    pruned.newest_ms = newest_ms
    _prune(pruned, catalog)
    lists = ("markers", "hello", "app_crashes", "restarts", "installs", "episodes", "reported")
    return any(getattr(pruned, name) != getattr(state, name) for name in lists)


@settings(max_examples=400, deadline=None)
@given(
    kinds=st.lists(st.integers(0, 5), min_size=1, max_size=14),
    offsets=st.lists(st.integers(0, 16 * 60), min_size=14, max_size=14),
    later=st.integers(1, 12 * 60),
    folded_by=st.sampled_from(["small", "default"]),
    judged_by=st.sampled_from(["small", "default"]),
)
def test_a_state_ages_out_exactly_when_pruning_it_would_change_it(
    kinds, offsets, later, folded_by, judged_by
):
    # Folded under one set of bounds and judged under another, as a stored state is
    # after the bounds changed: the small ones find lists longer than they allow.
    catalogs = {"small": SMALL, "default": Catalog()}
    state = None
    for signal in _history(kinds, sorted(offsets)):
        state = fold(state, signal, catalogs[folded_by]).state
    assert state is not None
    bounds = catalogs[judged_by]
    at = _ages_out_at(state, bounds)
    for newest_ms in (state.newest_ms + later * MINUTE_MS, at - 1, at, at + 1):
        if state.newest_ms < newest_ms < 2**62:
            assert (newest_ms >= at) == _prune_changes(state, newest_ms, bounds), newest_ms


def _episode(kb: str, ends_ms: int) -> Episode:
    return Episode(
        "PostUpdateBootLoop", f"fp-{kb}", kb, T0, T0, ends_ms, "PC-00042", "26100.3775", "arm64", 0x18B
    )


@pytest.mark.parametrize(
    ("state", "ages_out_ms"),
    [
        # A resolved episode is kept for its retention past its end; a firing one for ever.
        (
            DeviceState(DEVICE, T0, episodes=[_episode("KB1", T0), _episode("KB2", 0)]),
            T0 + SMALL.limits.episode_retention_ms + 1,
        ),
        (DeviceState(DEVICE, T0, episodes=[_episode("KB2", 0)]), 2**63),
        # More episodes than the bounds keep, or a reported KB nothing names: pruned at any time.
        (DeviceState(DEVICE, T0, episodes=[_episode(f"KB{n}", 0) for n in range(3)]), -(2**63)),
        (DeviceState(DEVICE, T0, reported=[Reported("KB9", "installed")]), -(2**63)),
        (
            DeviceState(DEVICE, T0, episodes=[_episode("KB9", 0)], reported=[Reported("KB9", "affected")]),
            2**63,
        ),
    ],
)
def test_what_ages_out_of_episodes_and_reports_and_when(state, ages_out_ms):
    assert _ages_out_at(state, SMALL) == ages_out_ms
    for newest_ms in (T0 + 1, ages_out_ms - 1, ages_out_ms, ages_out_ms + 1):
        if T0 < newest_ms < 2**62:
            assert (newest_ms >= ages_out_ms) == _prune_changes(state, newest_ms, SMALL)


def test_the_spelled_out_copies_of_a_state_copy_every_field():
    # `_copy` and the quick path build a `DeviceState` field by field, for speed: a
    # field added to it and not to them would be lost on the device's next signal.
    filled = _folded([install(T0), restart(RESTART_AT, 7), *crash_boot_signals(T0 + HOUR_MS, 3)])
    values: dict[str, object] = {}
    for number, spec in enumerate(dataclasses.fields(DeviceState)):
        value = getattr(filled, spec.name)
        if isinstance(value, int) and not value:
            value = 1000 + number  # every scalar set, and to a value of its own
        elif isinstance(value, str) and not value:
            value = f"{spec.name}-{number}"
        elif isinstance(value, list) and not value:
            # Only this list is still empty after the fold; an int stands in for its items,
            # which no copy looks into (the others' items are read by `_clock_only` below).
            value = [number] if spec.name == "background_loops" else value
        values[spec.name] = value
    state = DeviceState(**values)  # type: ignore[arg-type]
    copied = _copy(state)
    assert copied == state
    lists = [spec.name for spec in dataclasses.fields(DeviceState) if isinstance(values[spec.name], list)]
    assert all(getattr(copied, name) is not values[name] for name in lists)  # `fold` may change them
    # The quick path's copy: the same state, a minute later on its clock.
    quiet = replace(state, episodes=[], restarts=[])
    noted = _clock_only(quiet, replace(seen(state.newest_ms + MINUTE_MS), host=state.host), Catalog())
    assert noted is not None
    assert replace(noted.state, newest_ms=state.newest_ms) == quiet
