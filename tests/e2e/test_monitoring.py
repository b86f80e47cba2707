"""The whole path on loopback: worker -> Alertmanager -> webhook and pager; Prometheus with the deploy rules.

Real servers: the embedded broker, a `kbwatch worker`, Debian's Prometheus and
Alertmanager with the configuration from deploy/ (only addresses, files and
the group timers rewritten), and an HTTP receiver in this test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streams import codec, documents, stack
from streams.broker import EmbeddedBroker, free_port
from streams.dashboards import all_queries
from streams.demo import scrape
from streams.timeutil import HOUR_MS, MINUTE_MS, parse_event_time
from tests.e2e.conftest import isolated_settings, produce, running_worker

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


@pytest.fixture
def receiver() -> Iterator[stack.Receiver]:
    server = stack.Receiver().start()
    yield server
    server.shutdown()


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


def group_notifications(receiver: stack.Receiver, status: str) -> list[Any]:
    return [
        body
        for body in receiver.posted("/alerts")
        if body["status"] == status and body["groupLabels"] == {"alertname": "PostUpdateBootLoop", "kb": KB}
    ]


def scrape_metric(web_port: int, sample: str) -> float:
    """One sample of the worker's own `/metrics`, by its exact name and labels."""
    for line in scrape(f"http://127.0.0.1:{web_port}/metrics").splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not on /metrics")


def query(prometheus_port: int, expr: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def test_a_bad_update_reaches_the_pager_as_one_grouped_notification_then_its_resolution(
    broker: EmbeddedBroker, tmp_path: Path, receiver: stack.Receiver
):
    am_port, prom_port = free_port(), free_port()
    alertmanager = stack.start_alertmanager(
        ALERTMANAGER or "", stack.alertmanager_config(tmp_path, receiver.url), tmp_path, am_port
    )
    settings = replace(isolated_settings(broker, tmp_path), alertmanager_url=f"http://127.0.0.1:{am_port}")
    try:
        with running_worker(settings, tmp_path / "worker.log"):
            prometheus = stack.start_prometheus(
                PROMETHEUS or "",
                stack.prometheus_config(tmp_path, settings.web_port, am_port),
                tmp_path,
                prom_port,
            )
            try:
                asyncio.run(produce(settings, settings.events_topic, incident(1)))
                devices = {f"9a1e0000-0000-4000-8000-00000000000{n}" for n in range(3)}
                notices = wait_for(
                    lambda: [
                        notice
                        for notice in group_notifications(receiver, "firing")
                        if {alert["labels"]["device"] for alert in notice["alerts"]} == devices
                    ],
                    60,
                    "the firing notification of all three devices",
                )
                firing = notices[0]
                # kbwatch posts the three together. Alertmanager flushes a group at once
                # when an alert's startsAt is older than group_wait, and inserts a post's
                # alerts one by one, so under load its first notification can hold two
                # and the next (group_interval later) all three: at most two, then.
                delivered = scrape_metric(settings.web_port, 'kbwatch_delivery_requests_total{outcome="ok"}')
                assert delivered == 1
                firing_notices = len(group_notifications(receiver, "firing"))
                assert firing_notices <= 2
                assert all(alert["generatorURL"].endswith(f"var-kb={KB}") for alert in firing["alerts"])
                page = wait_for(
                    lambda: [
                        event
                        for event in receiver.posted("/v2/enqueue")
                        if "3 device" in event["payload"]["summary"]
                    ],
                    30,
                    "the PagerDuty event for three devices",
                )[0]
                assert page["event_action"] == "trigger"
                assert page["routing_key"] == "0123456789abcdef0123456789abcdef"
                assert KB in page["payload"]["summary"]

                asyncio.run(produce(settings, settings.events_topic, incident(2)))
                (resolved,) = wait_for(
                    lambda: group_notifications(receiver, "resolved"), 60, "the resolution"
                )
                assert {alert["status"] for alert in resolved["alerts"]} == {"resolved"}
                time.sleep(11)  # a second notification for the group would have come by now
                assert len(group_notifications(receiver, "firing")) == firing_notices
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
                stack.stop(prometheus)
    finally:
        stack.stop(alertmanager)
