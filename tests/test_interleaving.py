"""The worker's path, in one process: the same alerts as replay however it interleaves.

A worker reads an unkeyed input topic partition by partition, in fetches of
whatever size the broker hands back, aligns them (`streams.align.merge`),
announces the fleet clock after each batch, and its device agents and fleet
agent each run at their own pace. This drives the real sieve, merge, clock,
engines and tables through random such schedules and checks that the final
state of every alert is the one `kbwatch replay` reaches. The end-to-end tests
run one real schedule on the broker; this runs many, quickly, and reproducibly.
"""

from __future__ import annotations

import bisect
import random
import zlib
from dataclasses import dataclass, field

import pytest

from streams.align import NEVER_READ, Timed, merge
from streams.catalog import Catalog
from streams.clock import MAX_CLOCK_SKEW_MS, FleetClock
from streams.engine import Engine
from streams.evidence import Evidence
from streams.fleet import FleetEngine
from streams.metrics import Metrics
from streams.sieve import Sieve, SieveResult, Source
from streams.signals import Signal
from streams.simulate import FleetPlan, SimRecord, spring_2025
from streams.timeutil import wall_clock_ms
from tests.builders import final_by_fingerprint, replayed_verdicts

Partition = tuple[Source, int]


@dataclass
class Schedule:
    """One random way a worker's fetches, agents and fleet agent could take turns."""

    rng: random.Random
    partitions: int = 4
    alerts: list[dict] = field(default_factory=list)
    stalled: dict[int, int] = field(default_factory=dict)  # agent (-1: fleet) -> rounds left

    def run(self, stream: list[SimRecord]) -> dict:
        catalog, metrics = Catalog(), Metrics.create()
        sieve = Sieve(1 << 20)
        engine = Engine({}, catalog, metrics, {})
        fleet = FleetEngine({}, catalog, metrics, self.partitions)
        clock = FleetClock(catalog.silence.allowed_lateness_ms)
        now_ms = wall_clock_ms()
        inputs: dict[Partition, list[int]] = {
            (source, number): [] for source in Source for number in range(self.partitions)
        }
        for index, record in enumerate(stream):  # unkeyed: any partition
            inputs[record.source, self.rng.randrange(self.partitions)].append(index)
        read = dict.fromkeys(inputs, 0)
        partition_time: dict[Partition, int] = {}
        held: dict[Partition, list[Timed[list[SieveResult]]]] = {}
        signals: list[list[Signal | int]] = [[] for _ in range(self.partitions)]  # int: a tick
        evidence: list[Evidence] = []
        produced = 0
        while True:
            produced = min(len(stream), produced + self.rng.randint(50, 3000))
            visible = {tp: bisect.bisect_left(indexes, produced) for tp, indexes in inputs.items()}
            released: list[tuple[Partition, Timed[list[SieveResult]]]] = []
            for tp, indexes in inputs.items():
                fetched = indexes[read[tp] : min(visible[tp], read[tp] + self.rng.randint(0, 500))]
                timed = []
                for offset, index in enumerate(fetched, start=read[tp]):
                    results = sieve.sift(tp[0], stream[index].value)
                    timed.append(Timed(offset, max(result.event_ms for result in results), results))
                read[tp] += len(fetched)
                if tp[0] is Source.INSTALLS:
                    released += [(tp, record) for record in timed]  # not aligned, as the sieve does
                elif timed:
                    held.setdefault(tp, []).extend(timed)
            behind = {
                tp: partition_time.get(tp, NEVER_READ)
                for tp in inputs
                if tp[0] is Source.WINLOGBEAT and read[tp] < visible[tp]
            }
            done = produced == len(stream) and not behind
            merged = merge(held, behind, clock.allowed_lateness_ms)
            released += merged.released
            held = {
                tp: [record for record in records if record.offset >= merged.resume_at[tp]]
                for tp, records in held.items()
                if tp in merged.resume_at
            }
            newest = 0
            for tp, record in released:
                for result in record.item:
                    if tp[0] is Source.WINLOGBEAT and result.event_ms <= now_ms + MAX_CLOCK_SKEW_MS:
                        newest = max(newest, result.event_ms)
                        partition_time[tp] = max(partition_time.get(tp, 0), result.event_ms)
                    if result.signal is not None:
                        key = zlib.crc32(result.signal.device.encode()) % self.partitions
                        signals[key].append(result.signal)
            clock.observe(newest)
            watermark = clock.due_tick()
            if watermark:
                for queue in signals:
                    queue.append(watermark)
            for number, queue in enumerate(signals):  # each device agent at its own pace
                count = len(queue) if done else self._turn(number, len(queue))
                for item in queue[:count]:
                    output = (
                        engine.tick(item, number) if isinstance(item, int) else engine.process(item, number)
                    )
                    self._keep(output.alerts)
                    evidence += output.evidence
                del queue[:count]
            count = len(evidence) if done else self._turn(-1, len(evidence))
            for fact in evidence[:count]:
                self._keep(fleet.process(fact))
            del evidence[:count]
            if done and not held and not evidence and not any(signals):
                return final_by_fingerprint(self.alerts)

    def _turn(self, agent: int, waiting: int) -> int:
        """How much of its backlog an agent gets through now; now and then it stalls a while."""
        if self.stalled.get(agent, 0) > 0:
            self.stalled[agent] -= 1
            return 0
        if self.rng.random() < 0.1:
            self.stalled[agent] = self.rng.randint(1, 40)
            return 0
        return self.rng.choice([waiting, self.rng.randint(0, waiting)])

    def _keep(self, alerts: list) -> None:
        self.alerts += [alert.to_json() for alert in alerts]


@pytest.mark.parametrize(("devices", "fleet_seed", "schedules"), [(100, 5, range(4)), (240, 99, range(4))])
def test_any_schedule_of_the_live_path_ends_with_the_alerts_of_replay(devices, fleet_seed, schedules):
    stream, _ = spring_2025(FleetPlan(devices=devices, seed=fleet_seed))
    expected = replayed_verdicts(stream)
    assert any(status == "firing" for status, *_ in expected.values())
    for seed in schedules:
        live = Schedule(random.Random(seed)).run(stream)
        differing = {
            fp: (live.get(fp), expected.get(fp))
            for fp in set(live) | set(expected)
            if live.get(fp) != expected.get(fp)
        }
        assert not differing, f"schedule {seed}: (live, replay) {differing}"
