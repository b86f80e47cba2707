"""How `kbwatch bench` runs a peer process: its figure, its progress, and a peer that fails or stalls.

The peers here are small real processes that talk as `streams.bench_peers` does; the
peers themselves run against a broker in tests/e2e/test_bench.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from streams import bench, bench_peers


def script(*lines: str) -> list[str]:
    return [sys.executable, "-c", "\n".join(["import sys, time", *lines])]


def test_a_peer_figure_is_read_from_its_last_line_and_its_progress_is_relayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(bench, "PROGRESS_SECONDS", 0.0)
    peer = script(
        "print('starting up', flush=True)",
        # As Faust writes it: standard output redirected into a log line on stderr.
        """print('[2026-12-08 01:00:00,000] [1] [WARNING] {"peer":"faust","read":50000}', file=sys.stderr)""",
        """print('{"peer":"faust","records":80000,"seconds":2.0,"records_per_second":40000.0}')""",
    )
    assert bench.run_peer("faust", peer, 80_000, cwd=tmp_path) == 40_000.0
    said = capsys.readouterr().err
    assert "faust peer: 50,000 of 80,000 records, " in said


def test_a_peer_that_reads_nothing_more_is_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    peer = script("""print('{"peer":"quix","read":50000}', flush=True)""", "time.sleep(60)")
    started = time.monotonic()
    assert bench.run_peer("quix", peer, 80_000, cwd=tmp_path, stall_seconds=1.0) is None
    assert time.monotonic() - started < 30
    assert "the quix peer read nothing more for 1 s: stopped" in capsys.readouterr().err


def test_a_peer_that_only_logs_has_stalled_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # As a peer retrying a broker it cannot reach: log lines, and no record read.
    peer = script(
        "while True:",
        "    print('KafkaConnectionError: retrying', flush=True)",
        "    time.sleep(0.2)",
    )
    started = time.monotonic()
    assert bench.run_peer("faust", peer, 80_000, cwd=tmp_path, stall_seconds=1.0) is None
    assert time.monotonic() - started < 30
    assert "the faust peer read nothing more for 1 s: stopped" in capsys.readouterr().err


def test_a_peer_that_exits_without_a_figure_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    peer = script("print('KafkaConnectionError: cannot reach the broker', file=sys.stderr)", "sys.exit(3)")
    assert bench.run_peer("faust", peer, 80_000, cwd=tmp_path) is None
    said = capsys.readouterr().err
    assert "the faust peer failed (exit code 3)" in said
    assert "cannot reach the broker" in said


def test_a_peer_reports_at_each_mark_and_last_at_its_count():
    marks, mark = [], 0
    while mark < 120_000:
        mark = bench_peers._next_mark(mark, 120_000)
        marks.append(mark)
    assert marks == [50_000, 100_000, 120_000]
