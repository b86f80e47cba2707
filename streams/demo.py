"""`kbwatch demo`: the whole product on one machine in about a minute.

Starts the embedded broker and a real worker process, produces a simulated
fleet living through the spring-2025 updates, prints each alert as it arrives
on `kbwatch-alerts`, and ends with a summary checked against the simulator's
ground truth.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from streams import codec
from streams.broker import EmbeddedBroker
from streams.settings import Settings, env_name
from streams.simulate import FleetPlan, Role, produce_fleet, spring_2025
from streams.topics import ensure_topics

DEMO_TIMEOUT_SECONDS = 150.0
WORKER_READY_TIMEOUT_SECONDS = 60.0


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes `kbwatch worker` use exactly `settings`."""
    environment = dict(os.environ)
    for spec in fields(settings):
        environment[env_name(spec.name)] = str(getattr(settings, spec.name))
    return environment


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """`kbwatch worker` as a child process, its log in `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=worker_environment(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit within `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def scrape(url: str) -> str:
    """The text of a metrics page ("" when it does not answer)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text: str = response.read().decode()
            return text
    except OSError:
        return ""


def wait_until_consuming(metrics_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for the worker's web server and its sieve to have joined the group."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with code {process.returncode}")
        if scrape(metrics_url):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not serve {metrics_url} within {timeout:.0f} s")


def run_demo(devices: int, seed: int, web_port: int) -> int:
    """Run the demo; returns the process exit code (0 when every loop was caught)."""
    workdir = Path(tempfile.mkdtemp(prefix="kbwatch-demo-"))
    print(f"kbwatch demo: simulating {devices} Windows 11 devices through the spring-2025 updates")
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        settings = Settings.from_env(
            {},
            broker=broker.bootstrap,
            partitions=4,
            web_port=web_port,
            session_timeout_seconds=6.0,
            rebalance_timeout_seconds=6.0,
            data_dir=str(workdir / "data"),
            log_level="warning",
        )
        print(f"  embedded broker (Tansu) on {broker.bootstrap}")
        asyncio.run(ensure_topics(settings))
        worker = start_worker(settings, workdir / "worker.log")
        metrics_url = f"http://{settings.web_host}:{settings.web_port}/metrics"
        try:
            wait_until_consuming(metrics_url, worker, WORKER_READY_TIMEOUT_SECONDS)
            print(f"  worker running; Prometheus metrics at {metrics_url} (log: {workdir / 'worker.log'})")
            return asyncio.run(_produce_and_watch(settings, devices, seed, metrics_url))
        finally:
            stop_worker(worker)


async def _produce_and_watch(settings: Settings, devices: int, seed: int, metrics_url: str) -> int:
    plan = FleetPlan(devices=devices, seed=seed)
    stream, expectation = spring_2025(plan)
    recovering = {device for device, role in expectation.roles.items() if role is Role.LOOPER}
    print(
        f"  producing {len(stream):,} records: {len(expectation.loops)} devices will loop, "
        f"{len(expectation.decoys)} decoys must stay quiet\n"
    )
    started = time.monotonic()
    producing = asyncio.create_task(produce_fleet(plan, settings, stream))
    firing: dict[str, Any] = {}
    resolved: set[str] = set()
    consumer = AIOKafkaConsumer(
        settings.alerts_topic, bootstrap_servers=settings.bootstrap_servers(), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while time.monotonic() - started < DEMO_TIMEOUT_SECONDS:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    _show(codec.loads(message.value), firing, resolved, started)
            caught = {alert["labels"]["device"] for alert in firing.values()}
            done_resolving = {firing[fp]["labels"]["device"] for fp in resolved if fp in firing} >= recovering
            if producing.done() and caught >= set(expectation.loops) and done_resolving:
                break
    finally:
        await consumer.stop()
        if not producing.done():
            producing.cancel()
    return _summary(firing, resolved, expectation.loops, expectation.decoys, metrics_url, started)


def _show(alert: dict[str, Any], firing: dict[str, Any], resolved: set[str], started: float) -> None:
    labels = alert["labels"]
    fingerprint = alert["fingerprint"]
    elapsed = time.monotonic() - started
    if alert["status"] == "firing":
        if fingerprint in firing:
            return  # a corrected start time for an alert already shown
        firing[fingerprint] = alert
        print(
            f"[{elapsed:5.1f}s] FIRING   {labels['alertname']} {labels['kb']} on {labels['host']} "
            f"({labels['arch']}, {labels['os_build']}) stop {labels['stop_code']} since {alert['startsAt']}"
        )
    elif fingerprint not in resolved:
        resolved.add(fingerprint)
        print(
            f"[{elapsed:5.1f}s] RESOLVED {labels['alertname']} {labels['kb']} on {labels['host']} "
            f"(crash-free for 6 h of its own event time, ends {alert['endsAt']})"
        )


def _summary(
    firing: dict[str, Any],
    resolved: set[str],
    loops: dict[str, str],
    decoys: dict[str, Role],
    metrics_url: str,
    started: float,
) -> int:
    caught = {(alert["labels"]["device"], alert["labels"]["kb"]) for alert in firing.values()}
    missed = set(loops.items()) - caught
    false_alarms = {device for device, _ in caught} & set(decoys)
    per_kb = Counter(alert["labels"]["kb"] for alert in firing.values())
    print(f"\nSummary after {time.monotonic() - started:.0f} s:")
    for kb, count in sorted(per_kb.items()):
        print(f"  {kb}: {count} devices in a post-update boot loop")
    print(f"  {len(resolved)} alerts resolved after 6 h of stable event time")
    print(f"  caught {len(caught & set(loops.items()))}/{len(loops)} looping devices, missed {len(missed)}")
    print(f"  decoys alerted: {len(false_alarms)} of {len(decoys)} (single crashes, power button, ...)")
    metrics = scrape(metrics_url)
    shown = ("kbwatch_records_total", "kbwatch_crash_boots_total", "kbwatch_devices_tracked")
    for line in metrics.splitlines():
        if line.startswith(shown) and not line.rstrip().endswith(" 0.0"):
            print(f"  {line}")
    return 0 if not missed and not false_alarms else 1
