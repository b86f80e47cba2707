"""The whole path on loopback: worker -> Alertmanager -> webhook and pager; Prometheus with the deploy rules.

Real servers: the embedded broker, a `kbwatch worker`, Debian's Prometheus and
Alertmanager with the configuration from deploy/ (only addresses, files and
the group timers rewritten), and an HTTP receiver in this test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams import codec, documents
from streams.broker import EmbeddedBroker, free_port
from streams.dashboards import all_queries
from streams.timeutil import HOUR_MS, MINUTE_MS, parse_event_time
from tests.e2e.conftest import isolated_settings, produce, running_worker

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KB = "KB5058411"
T0 = parse_event_time("2025-05-13T14:00:00Z", 2**62)
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="prometheus and prometheus-alertmanager are not installed "
        "(Debian packages); .ci/run installs them",
    ),
]


class Receiver(ThreadingHTTPServer):
    """Keeps every JSON body posted to it, by path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def posted(self, path: str) -> list[Any]:
        with self.lock:
            return [body for where, body in self.bodies if where == path]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append((self.path, body))
        self.send_response(202)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def start(command: list[str], log: Path, ready_url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready_url, timeout=1):
                return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{command[0]} did not become ready: {log.read_text()[-3000:]}")


def alertmanager_config(tmp: Path, receiver: Receiver) -> Path:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    config["templates"] = [str(DEPLOY / "alertmanager" / "templates" / "*.tmpl")]
    # Timers short enough for a test; grouping, routing and inhibition as deployed.
    config["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    key = tmp / "pagerduty-routing-key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    for entry in config["receivers"]:
        for pager in entry.get("pagerduty_configs", []):
            pager["routing_key_file"] = str(key)
            pager["url"] = f"{receiver.url}/v2/enqueue"
        for hook in entry.get("webhook_configs", []):
            hook["url"] = f"{receiver.url}/alerts"
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def prometheus_config(tmp: Path, worker_port: int, alertmanager_port: int) -> Path:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{alertmanager_port}"
    ]
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{worker_port}"]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def incident(phase: int) -> list[bytes]:
    """Phase 1: three devices loop after the KB. Phase 2: seven hours later they run clean."""
    docs = []
    for number in range(3):
        host = documents.Host(host_id=f"9a1e0000-0000-4000-8000-00000000000{number}", name=f"PC-MON-{number}")
        if phase == 1:
            docs.append(documents.update_installed_19(host, T0, 10, KB, build="26100.4061"))
            for crash in range(3):
                at = T0 + (20 + 2 * crash) * MINUTE_MS
                docs += [
                    documents.kernel_general_12(host, at, 100 + crash * 2),
                    documents.kernel_power_41(host, at + 2000, 101 + crash * 2),
                ]
        else:
            docs.append(documents.security_4624(host, T0 + 7 * HOUR_MS, 500, "alice"))
    return [codec.dumps(document) for document in docs]


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def group_notifications(receiver: Receiver, status: str) -> list[Any]:
    return [
        body
        for body in receiver.posted("/alerts")
        if body["status"] == status and body["groupLabels"] == {"alertname": "PostUpdateBootLoop", "kb": KB}
    ]


def query(prometheus_port: int, expr: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def test_a_bad_update_reaches_the_pager_as_one_grouped_notification_then_its_resolution(
    broker: EmbeddedBroker, tmp_path: Path, receiver: Receiver
):
    am_port, prom_port = free_port(), free_port()
    alertmanager = start(
        [
            ALERTMANAGER or "",
            f"--config.file={alertmanager_config(tmp_path, receiver)}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
        f"http://127.0.0.1:{am_port}/-/ready",
    )
    settings = replace(isolated_settings(broker, tmp_path), alertmanager_url=f"http://127.0.0.1:{am_port}")
    try:
        with running_worker(settings, tmp_path / "worker.log"):
            prometheus = start(
                [
                    PROMETHEUS or "",
                    f"--config.file={prometheus_config(tmp_path, settings.web_port, am_port)}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp_path / "prometheus.log",
                f"http://127.0.0.1:{prom_port}/-/ready",
            )
            try:
                asyncio.run(produce(settings, settings.events_topic, incident(1)))
                (firing,) = wait_for(
                    lambda: group_notifications(receiver, "firing"), 60, "the firing notification"
                )
                assert len(firing["alerts"]) == 3
                assert {alert["labels"]["device"] for alert in firing["alerts"]} == {
                    f"9a1e0000-0000-4000-8000-00000000000{n}" for n in range(3)
                }
                assert all(alert["generatorURL"].endswith(f"var-kb={KB}") for alert in firing["alerts"])
                page = wait_for(lambda: receiver.posted("/v2/enqueue"), 30, "the PagerDuty event")[0]
                assert page["event_action"] == "trigger"
                assert page["routing_key"] == "0123456789abcdef0123456789abcdef"
                assert KB in page["payload"]["summary"] and "3 device" in page["payload"]["summary"]

                asyncio.run(produce(settings, settings.events_topic, incident(2)))
                (resolved,) = wait_for(
                    lambda: group_notifications(receiver, "resolved"), 60, "the resolution"
                )
                assert {alert["status"] for alert in resolved["alerts"]} == {"resolved"}
                time.sleep(3)  # a second notification for the group would have come by now
                assert len(group_notifications(receiver, "firing")) == 1
                assert len(group_notifications(receiver, "resolved")) == 1

                wait_for(lambda: query(prom_port, 'up{job="kbwatch"} == 1')["data"]["result"], 30, "a scrape")
                wait_for(
                    lambda: query(prom_port, "kbwatch:update_affected_ratio")["data"]["result"],
                    30,
                    "the rules",
                )
                for uid, panel, expr in all_queries():
                    answer = query(prom_port, expr)
                    assert answer["status"] == "success", (uid, panel.title, answer)
                    if panel.fleet:
                        assert answer["data"]["result"], (uid, panel.title, expr)
            finally:
                prometheus.terminate()
                prometheus.wait(10)
    finally:
        alertmanager.terminate()
        alertmanager.wait(10)
