"""`kbwatch demo`: the whole product on one machine in about a minute.

Starts the embedded broker and a real worker process, produces a simulated
fleet living through the spring-2025 updates, prints each alert as it arrives
on `kbwatch-alerts`, and ends with a summary checked against the simulator's
ground truth.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from streams import codec, stack
from streams.broker import FETCH_MAX_WAIT_MS, EmbeddedBroker, free_port
from streams.security import aiokafka_options
from streams.settings import Settings, env_name
from streams.simulate import Expectation, FleetPlan, produce_fleet, spring_2025
from streams.topics import ensure_topics

DEMO_TIMEOUT_SECONDS = 150.0
QUIET_SECONDS = 5.0
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


def wait_until_consuming(
    metrics_url: str, process: subprocess.Popen[bytes], timeout: float, poll_seconds: float = 0.5
) -> None:
    """Wait for the worker to say it is ready: its sieve joined, its tables recovered.

    The sieve is ready once its first read returned, so it may already be reading
    when this returns: up to `poll_seconds` of it (the bench asks often).
    """
    ready_url = metrics_url.removesuffix("/metrics") + "/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with code {process.returncode}")
        if scrape(ready_url):  # "" until it answers 200
            return
        time.sleep(poll_seconds)
    raise RuntimeError(f"the worker was not ready ({ready_url}) within {timeout:.0f} s")


def run_demo(devices: int, seed: int, web_port: int) -> int:
    """Run the demo; returns the process exit code (0 when every breakage was caught)."""
    workdir = Path(tempfile.mkdtemp(prefix="kbwatch-demo-"))
    print(f"kbwatch demo: simulating {devices} Windows 11 devices through the spring-2025 updates")
    with contextlib.ExitStack() as cleanup, EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        print(f"  embedded broker (Tansu) on {broker.bootstrap}")
        alertmanager_url, prometheus_port = _monitoring(cleanup, workdir, web_port)
        settings = Settings.from_env(
            {},
            broker=broker.bootstrap,
            partitions=4,
            web_port=web_port,
            session_timeout_seconds=20.0,
            rebalance_timeout_seconds=6.0,
            data_dir=str(workdir / "data"),
            log_level="warning",
            alertmanager_url=alertmanager_url,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        asyncio.run(ensure_topics(settings))
        worker = start_worker(settings, workdir / "worker.log")
        cleanup.callback(stop_worker, worker)
        metrics_url = f"http://{settings.web_host}:{settings.web_port}/metrics"
        wait_until_consuming(metrics_url, worker, WORKER_READY_TIMEOUT_SECONDS)
        print(f"  worker running; Prometheus metrics at {metrics_url} (log: {workdir / 'worker.log'})")
        if prometheus_port:
            binaries = stack.binaries()
            assert binaries is not None
            config = stack.prometheus_config(workdir, web_port, int(alertmanager_url.rsplit(":", 1)[1]))
            cleanup.callback(
                stack.stop, stack.start_prometheus(binaries[0], config, workdir, prometheus_port)
            )
            print(f"  Prometheus with deploy/prometheus rules at http://127.0.0.1:{prometheus_port}")
        return asyncio.run(_produce_and_watch(settings, devices, seed, metrics_url))


def _monitoring(cleanup: contextlib.ExitStack, workdir: Path, web_port: int) -> tuple[str, int]:
    """Start Alertmanager (deploy config, pages printed here) when installed: (its URL, Prometheus port)."""
    binaries = stack.binaries()
    if binaries is None:
        print("  (install Debian's prometheus and prometheus-alertmanager to see pages and rules too)")
        return "", 0
    receiver = stack.Receiver(on_post=_print_notification).start()
    cleanup.callback(receiver.shutdown)
    port = free_port()
    config = stack.alertmanager_config(workdir, receiver.url)
    cleanup.callback(stack.stop, stack.start_alertmanager(binaries[1], config, workdir, port))
    print(f"  Alertmanager with deploy/alertmanager at http://127.0.0.1:{port} (pages and webhooks below)")
    return f"http://127.0.0.1:{port}", free_port()


def _print_notification(path: str, body: Any) -> None:
    if path.endswith("/v2/enqueue"):
        summary = body.get("payload", {}).get("summary", "")
        line = f"           PAGE     PagerDuty {body.get('event_action')}: {summary}"
    elif isinstance(body, dict) and "groupLabels" in body:
        group = body["groupLabels"]
        line = (
            f"           WEBHOOK  {body['status']} {group.get('alertname')} {group.get('kb')}: "
            f"{len(body.get('alerts', []))} alert(s) in one notification"
        )
    else:
        return
    sys.stdout.write(line + "\n")  # one write: this runs on the receiver's thread


async def _produce_and_watch(settings: Settings, devices: int, seed: int, metrics_url: str) -> int:
    plan = FleetPlan(devices=devices, seed=seed)
    stream, expectation = spring_2025(plan)
    print(
        f"  producing {len(stream):,} records: {len(expectation.alerts)} devices will break "
        f"(boot loops, silence, Hello, app crashes), {len(expectation.decoys)} decoys must stay quiet\n"
    )
    started = time.monotonic()
    producing = asyncio.create_task(produce_fleet(plan, settings, stream))
    seen: dict[str, dict[str, Any]] = {}  # fingerprint -> last alert
    consumer = AIOKafkaConsumer(
        settings.alerts_topic,
        bootstrap_servers=settings.bootstrap_servers(),
        auto_offset_reset="earliest",
        **aiokafka_options(settings),
    )
    await consumer.start()
    last_news = time.monotonic()
    try:
        while time.monotonic() - started < DEMO_TIMEOUT_SECONDS:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    _show(codec.loads(message.value), seen, started)
                    last_news = time.monotonic()
            caught = _caught(seen)
            if (
                producing.done()
                and caught >= set(expectation.alerts.items())
                and time.monotonic() - last_news > 5
            ):
                break
    finally:
        await consumer.stop()
        if not producing.done():
            producing.cancel()
    return _summary(seen, expectation, metrics_url, started)


def _caught(seen: dict[str, dict[str, Any]]) -> set[tuple[str, tuple[str, str]]]:
    return {
        (alert["labels"]["device"], (alert["labels"]["alertname"], alert["labels"]["kb"]))
        for alert in seen.values()
        if "device" in alert["labels"]
    }


def _show(alert: dict[str, Any], seen: dict[str, dict[str, Any]], started: float) -> None:
    labels = alert["labels"]
    previous = seen.get(alert["fingerprint"])
    seen[alert["fingerprint"]] = alert
    if previous is not None and previous["status"] == alert["status"]:
        return  # a corrected start time for an alert already shown
    where = labels.get("host") or f"the fleet ({labels.get('arch', 'all')})"
    detail = labels.get("stop_code") or labels.get("app") or ""
    text = f"{labels['alertname']} {labels['kb']} on {where} {detail}".rstrip()
    elapsed = time.monotonic() - started
    if alert["status"] == "firing":
        print(f"[{elapsed:5.1f}s] FIRING   {text} since {alert['startsAt']}")
    else:
        print(f"[{elapsed:5.1f}s] RESOLVED {text} at {alert['endsAt']}")


def _summary(
    seen: dict[str, dict[str, Any]], expectation: Expectation, metrics_url: str, started: float
) -> int:
    caught = _caught(seen)
    expected = set(expectation.alerts.items())
    missed = expected - caught
    false_alarms = {device for device, _ in caught} & set(expectation.decoys)
    per_rule = Counter(
        (alert["labels"]["alertname"], alert["labels"]["kb"])
        for alert in seen.values()
        if "device" in alert["labels"]
    )
    flagged = {
        alert["labels"]["kb"] for alert in seen.values() if alert["labels"]["alertname"] == "UpdateRegression"
    }
    print(f"\nSummary after {time.monotonic() - started:.0f} s:")
    for (alertname, kb), count in sorted(per_rule.items()):
        print(f"  {kb} {alertname}: {count} devices")
    print(f"  UpdateRegression (bad update, fleet-wide): {', '.join(sorted(flagged)) or 'none'}")
    resolved = sum(1 for alert in seen.values() if alert["status"] == "resolved")
    print(f"  {resolved} alerts resolved (recovered devices)")
    print(f"  caught {len(expected & caught)}/{len(expected)} breaking devices, missed {len(missed)}")
    for device, (alertname, kb) in sorted(missed):
        print(f"    missed: {alertname} {kb} on {device} ({expectation.roles[device].value})")
    print(
        f"  decoys alerted: {len(false_alarms)} of {len(expectation.decoys)} "
        "(single crashes, power button, face mismatches, ...)"
    )
    benign_flagged = flagged - expectation.bad_kbs
    print(f"  good updates flagged as bad: {len(benign_flagged)}")
    metrics = scrape(metrics_url)
    shown = ("kbwatch_records_total", "kbwatch_crash_boots_total", "kbwatch_devices_tracked")
    for line in metrics.splitlines():
        if line.startswith(shown) and not line.rstrip().endswith(" 0.0"):
            print(f"  {line}")
    return 0 if not missed and not false_alarms and not benign_flagged else 1
