"""`kbwatch replay` over the simulated spring-2025 fleet and through the CLI."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from streams import codec, documents
from streams.catalog import Catalog
from streams.documents import Host
from streams.replay import replay
from streams.sieve import Sieve
from streams.simulate import DECOY_ROLES, FleetPlan, Role, spring_2025, write_fleet
from tests.builders import final_by_fingerprint

DAY_MS = 24 * 60 * 60 * 1000
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
PLAN = FleetPlan(devices=300, seed=11)


@pytest.fixture(scope="module")
def fleet_replay():
    stream, expectation = spring_2025(PLAN)
    lines = ((f"sim:{index}", record.value) for index, record in enumerate(stream))
    summary = replay(lines, catalog=Catalog(), sieve=Sieve(256 * 1024))
    return summary, expectation


def device_alerts(alerts):
    return [alert for alert in alerts if "device" in alert.labels]


def test_every_looping_device_alerts_with_its_kb(fleet_replay):
    summary, expectation = fleet_replay
    fired = {
        (alert.labels["device"], alert.labels["kb"])
        for alert in summary.alerts
        if alert.status == "firing" and alert.labels["alertname"] == "PostUpdateBootLoop"
    }
    assert len(expectation.loops) >= 10
    assert fired == set(expectation.loops.items())


def test_every_device_alert_fires_for_the_devices_and_kbs_that_earned_it(fleet_replay):
    summary, expectation = fleet_replay
    fired = {
        (alert.labels["device"], (alert.labels["alertname"], alert.labels["kb"]))
        for alert in device_alerts(summary.alerts)
        if alert.status == "firing"
    }
    assert {alertname for alertname, _ in expectation.alerts.values()} == {
        "PostUpdateBootLoop",
        "PostUpdateHelloFailure",
        "PostUpdateAppCrashLoop",
        "DeviceSilentAfterUpdate",
    }
    assert fired == set(expectation.alerts.items())


def test_no_decoy_alerts(fleet_replay):
    summary, expectation = fleet_replay
    alerted = {alert.labels["device"] for alert in device_alerts(summary.alerts)}
    assert set(expectation.decoys.values()) == DECOY_ROLES
    assert not alerted & set(expectation.decoys)


def test_update_regression_fires_for_the_bad_updates_only(fleet_replay):
    summary, expectation = fleet_replay
    regressions = [alert for alert in summary.alerts if alert.labels["alertname"] == "UpdateRegression"]
    flagged = {alert.labels["kb"] for alert in regressions if alert.status == "firing"}
    clearly_bad = {kb for kb in expectation.bad_kbs if expectation.affected.get(kb, 0) >= 8}
    assert clearly_bad
    assert clearly_bad <= flagged <= expectation.bad_kbs
    assert "KB5051987" not in flagged  # the good update with one unlucky device
    for alert in regressions:
        assert "device" not in alert.labels and "host" not in alert.labels
        assert int(alert.annotations["affected"]) >= 5
        assert float(alert.annotations["rate"]) >= 3 * float(alert.annotations["baseline"])


def test_recovered_devices_resolve_and_stuck_ones_keep_firing(fleet_replay):
    summary, expectation = fleet_replay
    final = {
        alert.labels["device"]: alert.status
        for alert in summary.alerts
        if alert.labels["alertname"] == "PostUpdateBootLoop"
    }
    for device, role in expectation.roles.items():
        if role is Role.LOOPER:
            assert final[device] == "resolved"
        elif role is Role.STUCK_LOOPER:
            assert final[device] == "firing"


def test_no_alert_blames_a_definition_update(fleet_replay):
    summary, _ = fleet_replay
    assert {alert.labels["kb"] for alert in summary.alerts} <= {
        "KB5051987",
        "KB5053598",
        "KB5053656",
        "KB5055523",
    }


def test_every_alert_matches_the_published_schema(fleet_replay):
    summary, _ = fleet_replay
    schema = json.loads((SCHEMAS / "alert.schema.json").read_text())
    for alert in summary.alerts:
        jsonschema.validate(alert.to_json(), schema)


def test_bad_lines_go_to_the_dlq_and_the_rest_still_alerts():
    stream, expectation = spring_2025(FleetPlan(devices=60, seed=3, loop_share=0.2))
    lines = [record.value for record in stream]
    hostile = [b"not json", b"[]", b'{"winlog": 5}', "caf\u00e9".encode("latin-1")]
    mixed = [(f"f:{i}", line) for i, line in enumerate(hostile + lines)]
    dlq_out = io.BytesIO()
    summary = replay(mixed, catalog=Catalog(), sieve=Sieve(256 * 1024), dlq_out=dlq_out)
    envelopes = [json.loads(line) for line in dlq_out.getvalue().splitlines()]
    assert [envelope["reason"] for envelope in envelopes] == [
        "not_json",
        "not_object",
        "not_winlogbeat",
        "not_json",
    ]
    assert envelopes[0]["original"] == "not json"
    assert "original_base64" in envelopes[3]
    schema = json.loads((SCHEMAS / "dlq-envelope.schema.json").read_text())
    for envelope in envelopes:
        jsonschema.validate(envelope, schema)
    fired = {alert.labels["device"] for alert in device_alerts(summary.alerts)}
    assert fired == set(expectation.alerts)


def test_cli_replays_gzip_files_and_writes_alerts_and_dlq(tmp_path):
    plan = FleetPlan(devices=80, seed=5, loop_share=0.15)
    plain = tmp_path / "fleet.ndjson"
    write_fleet(plan, str(plain))
    packed = tmp_path / "fleet.ndjson.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes() + b"{broken\n"))
    alerts_path, dlq_path = tmp_path / "alerts.ndjson", tmp_path / "dlq.ndjson"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "replay",
            str(packed),
            "-o",
            str(alerts_path),
            "--dlq",
            str(dlq_path),
        ],
        capture_output=True,
        check=True,
    )
    assert b"rejected" in completed.stderr
    alerts = [codec.loads(line) for line in alerts_path.read_bytes().splitlines()]
    _, expectation = spring_2025(plan)
    fired = {
        (alert["labels"]["device"], (alert["labels"]["alertname"], alert["labels"]["kb"]))
        for alert in alerts
        if alert["status"] == "firing" and "device" in alert["labels"]
    }
    assert fired == set(expectation.alerts.items())
    assert [codec.loads(line)["reason"] for line in dlq_path.read_bytes().splitlines()] == ["not_json"]


def test_cli_replay_reads_stdin_and_names_missing_files(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(tmp_path / "nope.ndjson")], capture_output=True
    )
    assert missing.returncode == 2
    assert b"no such file" in missing.stderr
    piped = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", "-"], input=b"\n\n", capture_output=True, check=True
    )
    assert piped.stdout == b""


def test_replaying_the_same_input_twice_writes_byte_identical_alerts():
    stream, _ = spring_2025(FleetPlan(devices=60, seed=11))
    outputs = []
    for _ in range(2):
        out = io.BytesIO()
        replay(
            ((str(index), record.value) for index, record in enumerate(stream)),
            catalog=Catalog(),
            sieve=Sieve(1 << 20),
            alert_out=out,
        )
        outputs.append(out.getvalue())
    assert outputs[0] and outputs[0] == outputs[1]


@pytest.mark.parametrize("fast_devices", [1, 2])
@pytest.mark.parametrize("share", [0.35, 0.8])
def test_device_clocks_days_fast_change_no_alert_of_a_replayed_fleet(fleet_replay, fast_devices, share):
    """Before 0.8.9 one such record moved the fleet clock 15 days ahead and the fleet's
    devices with nothing firing were forgotten: their installs, and the alerts they led to."""
    summary, _ = fleet_replay
    stream, _ = spring_2025(PLAN)
    at = int(len(stream) * share)
    ahead_ms = stream[at].time_ms + 15 * DAY_MS
    hosts = [Host(f"fast-{number}", f"FAST{number}") for number in range(fast_devices)]
    noise = [documents.service_control_7036(host, ahead_ms, 1, "Spooler", "running") for host in hosts]
    values = [record.value for record in stream]
    values[at:at] = [codec.dumps(document) for document in noise]
    lines = ((f"sim:{index}", value) for index, value in enumerate(values))
    with_fast = replay(lines, catalog=Catalog(), sieve=Sieve(256 * 1024))
    before = final_by_fingerprint([alert.to_json() for alert in summary.alerts])
    assert final_by_fingerprint([alert.to_json() for alert in with_fast.alerts]) == before
