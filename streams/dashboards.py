"""The Grafana dashboards, built from code so that every query names a real metric.

`kbwatch dashboards --output DIR` writes them; `deploy/grafana/dashboards/`
holds the result, and a test checks that it is current and that every query
runs against a real Prometheus scraping a real worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True, slots=True)
class Panel:
    """One panel: a title, its queries (PromQL, legend) and how to draw it."""

    title: str
    queries: tuple[tuple[str, str], ...]
    kind: str = "timeseries"
    unit: str = "short"
    description: str = ""
    fleet: bool = False  # a fleet panel: the end-to-end test expects data from it


FLEET = (
    Panel(
        "Devices affected per update",
        (("sum by (kb) (kbwatch_update_affected_devices)", "{{kb}}"),),
        description="Devices that boot-looped or went silent within 72 h after installing each KB.",
        fleet=True,
    ),
    Panel(
        "Affected, recovered and still failing",
        (
            ("sum by (kb) (kbwatch_update_affected_devices)", "{{kb}} affected"),
            ("sum by (kb) (kbwatch_update_recovered_devices)", "{{kb}} recovered"),
            ("sum by (kb) (kbwatch_update_failing_devices)", "{{kb}} failing"),
        ),
        kind="table",
        fleet=True,
    ),
    Panel(
        "Share of installs affected (cohort: KB)",
        (("kbwatch:update_affected_ratio", "{{kb}}"),),
        unit="percentunit",
        fleet=True,
    ),
    Panel(
        "Boot loops by stop code",
        (("sum by (stop_code) (increase(kbwatch_boot_loops_total[1h]))", "{{stop_code}}"),),
        kind="barchart",
        fleet=True,
    ),
    Panel(
        "Alerts firing by rule (1 h)",
        (("kbwatch:alerts_firing:increase1h", "{{alertname}}"),),
        fleet=True,
    ),
    Panel(
        "Windows Hello failures (alerts, 1 h)",
        (
            (
                'sum(increase(kbwatch_alerts_total{alertname="PostUpdateHelloFailure",status="firing"}[1h]))',
                "Hello",
            ),
        ),
        fleet=True,
    ),
    Panel(
        "Devices silent after an update (alerts, 1 h)",
        (
            (
                'sum(increase(kbwatch_alerts_total{alertname="DeviceSilentAfterUpdate",status="firing"}[1h]))',
                "silent",
            ),
        ),
        fleet=True,
    ),
    Panel("Devices tracked", (("sum(kbwatch_devices_tracked)", "devices"),), kind="stat", fleet=True),
)

PIPELINE = (
    Panel(
        "Records per second by outcome", (("kbwatch:records:rate5m", "{{source}} {{outcome}}"),), unit="ops"
    ),
    Panel("Event-time lag", (("kbwatch_event_time_lag_seconds", "{{instance}}"),), unit="s"),
    Panel(
        "Fleet clock",
        (("kbwatch_fleet_clock_timestamp_seconds * 1000", "{{instance}}"),),
        unit="dateTimeAsIso",
    ),
    Panel("Dead letters per second by reason", (("kbwatch:dlq:rate5m", "{{reason}}"),), unit="ops"),
    Panel("Input partitions per worker", (("kbwatch_partitions_assigned", "{{instance}} {{source}}"),)),
    Panel(
        "Signals per second by effect",
        (("sum by (kind, outcome) (rate(kbwatch_signals_total[5m]))", "{{kind}} {{outcome}}"),),
        unit="ops",
    ),
    Panel(
        "Alertmanager posts per second",
        (("sum by (outcome) (rate(kbwatch_delivery_requests_total[5m]))", "{{outcome}}"),),
        unit="ops",
    ),
    Panel(
        "Broker errors retried",
        (
            (
                "sum by (instance, component) (increase(kbwatch_broker_errors_total[5m]))",
                "{{instance}} {{component}}",
            ),
        ),
    ),
    Panel(
        "Fleet facts waiting for the fleet clock",
        (
            ("kbwatch_fleet_evidence_held", "{{instance}} held"),
            ("increase(kbwatch_evidence_late_total[1h])", "{{instance}} late"),
        ),
    ),
    Panel("Workers up", (('up{job="kbwatch"}', "{{instance}}"),), kind="stat"),
    Panel(
        "What each worker runs",
        (("kbwatch_build_info", "{{instance}} {{version}} {{sieve_client}} {{event_loop}}"),),
        kind="table",
        description="Version, sieve client (KBWATCH_SIEVE_CLIENT) and event loop (KBWATCH_EVENT_LOOP).",
    ),
)

DASHBOARDS: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "kbwatch-fleet": ("kbwatch: fleet", FLEET),
    "kbwatch-pipeline": ("kbwatch: pipeline", PIPELINE),
}


def dashboard(uid: str) -> dict[str, Any]:
    """One dashboard as Grafana's JSON model (stable uid, `id: null`)."""
    title, panels = DASHBOARDS[uid]
    return {
        "uid": uid,
        "id": None,
        "title": title,
        "tags": ["kbwatch"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                    "current": {},
                }
            ]
        },
        "links": [
            {"title": other, "type": "link", "url": f"/d/{other}/{other}"}
            for other in DASHBOARDS
            if other != uid
        ],
        "panels": [_panel(index, panel) for index, panel in enumerate(panels)],
    }


def all_queries() -> list[tuple[str, Panel, str]]:
    """(dashboard uid, panel, expression) for every query of every dashboard."""
    return [
        (uid, panel, expr)
        for uid, (_, panels) in DASHBOARDS.items()
        for panel in panels
        for expr, _ in panel.queries
    ]


def write(directory: Path) -> list[Path]:
    """Write every dashboard as `<uid>.json` into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for uid in DASHBOARDS:
        path = directory / f"{uid}.json"
        path.write_bytes(render(uid))
        written.append(path)
    return written


def render(uid: str) -> bytes:
    import orjson

    return orjson.dumps(dashboard(uid), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def _panel(index: int, panel: Panel) -> dict[str, Any]:
    width = 12
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": (index % 2) * width, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + number), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for number, (expr, legend) in enumerate(panel.queries)
        ],
    }
