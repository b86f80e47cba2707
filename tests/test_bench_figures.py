"""What `kbwatch bench` reads off the machine and how it prints it (no timing assertions)."""

from __future__ import annotations

import os
import time

from streams.bench import _cpu_line, _cpu_seconds


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
