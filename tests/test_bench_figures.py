"""What `kbwatch bench` reads off the machine and how it prints it (no timing assertions)."""

from __future__ import annotations

import os
import time

from streams import codec, documents
from streams.bench import (
    LOOK_SECONDS,
    MAX_LOOK_SECONDS,
    GroupRun,
    Round,
    _cpu_line,
    _cpu_seconds,
    _next_look_in,
    device_keys,
    median_round,
)
from tests.builders import DEVICE, HOST, T0


def test_a_process_cpu_time_grows_while_it_works_and_is_zero_when_unreadable():
    before = _cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert _cpu_seconds(os.getpid()) > before
    assert _cpu_seconds(2**22 + 7) == 0.0  # above Linux's largest process id


def test_the_cpu_line_names_each_process_and_leaves_out_a_broker_it_did_not_start():
    figures = {
        "cpu_cores": {"worker": 0.99, "broker": 0.13},
        "workers_cpu_cores": {"workers": [0.85, 0.84], "broker": 0.28},
    }
    assert _cpu_line(figures) == "cpu cores: worker 0.99, broker 0.13; 2 workers 0.85 + 0.84, broker 0.28"
    outside = {"cpu_cores": {"worker": 0.97, "broker": None}, "workers_cpu_cores": None}
    assert _cpu_line(outside) == "cpu cores: worker 0.97"


def test_the_bench_looks_often_where_the_clock_starts_and_stops_and_rarely_between():
    started = 100.0
    # Before the clock starts, and before anything is read, every 50 ms.
    assert _next_look_in(None, 100.0, 0, 1_000_000) == LOOK_SECONDS
    assert _next_look_in(started, 100.0, 0, 1_000_000) == LOOK_SECONDS
    # 100,000 read in 2 s, 900,000 left (18 s at that pace): the look can wait, up to a bound.
    assert _next_look_in(started, 102.0, 100_000, 900_000) == MAX_LOOK_SECONDS
    # 0.4 s left at that pace: a tenth of a second.
    assert _next_look_in(started, 102.0, 100_000, 20_000) == 0.1
    # About to finish, or finished: every 50 ms again.
    assert _next_look_in(started, 102.0, 100_000, 1_000) == LOOK_SECONDS
    assert _next_look_in(started, 102.0, 100_000, 0) == LOOK_SECONDS


def test_a_keyed_bench_topic_keys_each_record_by_the_device_kbwatch_names():
    named = codec.dumps(documents.security_4624(HOST, T0, 1, "alice"))
    by_name = codec.loads(named)
    del by_name["host"]["id"]
    records = [named, codec.dumps(by_name), b"not json", b"[1, 2]", codec.dumps({"winlog": {}})]
    assert device_keys(records) == [DEVICE.encode(), HOST.name.lower().encode(), None, None, None]


def _round(product_rate: float, ceiling_rate: float = 50_000.0) -> Round:
    return Round(ceiling_rate, None, GroupRun(product_rate, (0.9,), 0.3), peak_rss=1)


def test_the_cpu_shares_of_several_rounds_come_from_the_round_at_the_median():
    rounds = [_round(30_000.0), _round(20_000.0), _round(25_000.0)]
    assert median_round(rounds).product_rate == 25_000.0
    # Of two middle rounds, the slower: shares one run did show, not a blend of two.
    assert median_round([_round(30_000.0), _round(20_000.0)]).product_rate == 20_000.0
    assert median_round([_round(0.0)]).product_rate == 0.0
