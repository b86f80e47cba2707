"""`kbwatch bench` keeps working (small sizes; no timing assertions: figures vary by machine)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from streams import bench
from streams.bench import BenchPlan
from streams.broker import EmbeddedBroker

pytestmark = pytest.mark.e2e

KEYS = {
    "records_per_second",
    "ceiling_records_per_second",
    "ratio_to_ceiling",
    "peer_records_per_second",
    "speedup_over_peer",
    "quix_records_per_second",
    "speedup_over_quix",
    "alert_latency_p50_seconds",
    "alert_latency_p99_seconds",
    "state_bytes_per_device",
    "peak_rss_bytes",
}


def test_bench_runs_end_to_end_and_ends_with_its_json_figures():
    command = [sys.executable, "-m", "streams.cli", "bench", "--devices", "20", "--incidents", "5"]
    command += ["--state-devices", "300", "--skip-peers", "--store", "rocksdb://", "--workers", "2", "--json"]
    command += ["--sieve-client", "librdkafka"]  # aiokafka, the default, runs in the other end-to-end tests
    command += ["--rounds", "2", "--event-loop", "asyncio"]  # uvloop, the default, runs elsewhere too
    completed = subprocess.run(command, capture_output=True, timeout=300)
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    figures = orjson.loads(completed.stdout.decode().strip().splitlines()[-1])
    assert set(figures) >= KEYS
    assert figures["records"] > 1000
    assert figures["records_per_second"] > 0 and figures["ceiling_records_per_second"] > 0
    assert figures["alert_latency_samples"] == 5
    assert 0 < figures["state_bytes_per_device"] < 1024
    assert figures["peak_rss_bytes"] > 0
    assert figures["store"] == "rocksdb://"
    assert figures["sieve_client"] == "librdkafka"
    assert figures["event_loop"] == "asyncio"
    assert figures["workers"] == 2
    assert figures["rounds"] == 2
    each = figures["round_records_per_second"]
    assert len(each) == 2 and len(figures["round_ceiling_records_per_second"]) == 2
    assert figures["round_quix_records_per_second"] == [None, None]  # peers skipped
    assert min(each) - 1 <= figures["records_per_second"] <= max(each) + 1  # their median
    assert "(round 2 of 2)" in completed.stderr.decode()
    scaled = figures["workers_records_per_second"]
    assert (scaled is not None and scaled > 0 and figures["speedup_over_one_worker"] > 0) or (
        b"no figure" in completed.stderr
    )
    # CPU per process over each timed stretch. This stream is read within a look or
    # two, so a share may round to 0 (clock ticks of 10 ms); the bound catches a unit
    # slip (ticks not divided by the clock rate read as 100 times too many cores).
    cpu = figures["cpu_cores"]
    most = (os.cpu_count() or 1) + 1  # one core of slack for a short stretch's tick rounding
    assert 0 <= cpu["worker"] <= most and cpu["broker"] is not None and 0 <= cpu["broker"] <= most
    several = figures["workers_cpu_cores"]
    assert (several is not None and len(several["workers"]) == 2 and several["broker"] is not None) or (
        scaled is None
    )
    assert "records/s" in completed.stdout.decode()
    assert "cpu cores: worker" in completed.stdout.decode()
    # The JSON is a contract: the README's Performance section names every key it carries.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    performance = readme.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    assert [key for key in figures if f"`{key}`" not in performance] == []


@pytest.mark.parametrize("kind", ["faust", "quix"])
def test_each_peer_reads_the_whole_topic_and_reports_its_figure(
    broker: EmbeddedBroker, tmp_path: Path, kind: str
) -> None:
    if kind == "quix" and importlib.util.find_spec("quixstreams") is None:
        pytest.skip("Quix Streams is an optional bench dependency (pip install 'kbwatch[bench]')")
    records = bench.fleet_records(BenchPlan(devices=5))
    topic = f"peer-{uuid.uuid4().hex[:8]}"
    asyncio.run(bench.create_topic(broker.bootstrap, topic, 2))
    asyncio.run(bench.produce(broker.bootstrap, topic, records))
    rate = bench.peer(kind, broker.bootstrap, topic, len(records), 2, tmp_path)
    assert rate is not None and rate > 0
