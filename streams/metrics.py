"""Every Prometheus metric the product exports, declared against one registry.

Names are a contract (README, "Metrics"): one `kbwatch_` prefix, base units,
`_total` counters, and labels only from small known sets. No device or host
label, ever: anyone who can write to the input topic could explode it.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from streams import __version__, stopcodes
from streams.catalog import Catalog
from streams.detector import Applied
from streams.evidence import EvidenceKind
from streams.outcomes import RejectReason
from streams.sieve import Sifted, Source
from streams.signals import SignalKind

STATUSES = ("firing", "resolved")


def stop_code_labels() -> list[str]:
    """The bounded `stop_code` label set: the catalog's named codes, `other` and `unknown`."""
    return [stopcodes.label(code) for code in sorted(stopcodes.NAMES)] + ["other", "unknown"]


def stop_code_label(code: int) -> str:
    """A stop code as a metric label: named codes as themselves, the rest `other`."""
    if not code:
        return "unknown"
    return stopcodes.label(code) if code in stopcodes.NAMES else "other"


OTHER_KB = "other"


@dataclass(frozen=True, slots=True)
class Metrics:
    """The product's metrics; create with `Metrics.create(registry)`."""

    registry: CollectorRegistry
    records: Counter
    signals: Counter
    crash_boots: Counter
    alerts: Counter
    alerts_resent: Counter
    dlq: Counter
    devices_tracked: Gauge
    devices_expired: Counter
    newest_event_time: Gauge
    event_time_lag: Gauge
    fleet_clock: Gauge
    evidence: Counter
    evidence_held: Gauge
    broker_errors: Counter
    evidence_late: Counter
    evidence_replayed: Counter
    kb_installed: Gauge
    kb_affected: Gauge
    kb_recovered: Gauge
    kb_failing: Gauge
    boot_loops: Counter
    partitions: Gauge
    delivery_requests: Counter
    delivery_alerts: Gauge
    delivery_last_success: Gauge
    build: Info

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Declare every metric and pre-create labelled series at 0."""
        registry = registry if registry is not None else CollectorRegistry()
        metrics = cls(
            registry=registry,
            records=Counter(
                "kbwatch_records",
                "Input messages read, by source topic kind and what the sieve did with them.",
                ["source", "outcome"],
                registry=registry,
            ),
            signals=Counter(
                "kbwatch_signals",
                "Signals applied to per-device state, by kind and effect.",
                ["kind", "outcome"],
                registry=registry,
            ),
            crash_boots=Counter(
                "kbwatch_crash_boots",
                "Crash boots counted (one per boot, however many records it left).",
                registry=registry,
            ),
            alerts=Counter(
                "kbwatch_alerts",
                "Alert state changes sent to the alerts topic.",
                ["alertname", "severity", "status"],
                registry=registry,
            ),
            alerts_resent=Counter(
                "kbwatch_alerts_resent",
                "Alerts sent again as they stand, unchanged, where a crash may have lost them "
                "(a duplicate record; the first tick or evidence after a start or takeover).",
                registry=registry,
            ),
            dlq=Counter(
                "kbwatch_dlq",
                "Messages sent to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            devices_tracked=Gauge(
                "kbwatch_devices_tracked",
                "Devices with state on this worker.",
                registry=registry,
            ),
            devices_expired=Counter(
                "kbwatch_devices_expired",
                "Idle device states forgotten in event time.",
                registry=registry,
            ),
            newest_event_time=Gauge(
                "kbwatch_newest_event_timestamp_seconds",
                "Newest event time read from the input topics (Unix seconds).",
                registry=registry,
            ),
            event_time_lag=Gauge(
                "kbwatch_event_time_lag_seconds",
                "Wall clock minus the newest event time read, at the last batch.",
                registry=registry,
            ),
            fleet_clock=Gauge(
                "kbwatch_fleet_clock_timestamp_seconds",
                "The fleet clock: newest event time read minus the allowed lateness (Unix seconds).",
                registry=registry,
            ),
            evidence=Counter(
                "kbwatch_evidence",
                "Facts about devices and KBs applied by the fleet agent, by kind.",
                ["kind"],
                registry=registry,
            ),
            evidence_held=Gauge(
                "kbwatch_fleet_evidence_held",
                "Facts the fleet agent holds until every signals partition's fleet clock passes them.",
                registry=registry,
            ),
            broker_errors=Counter(
                "kbwatch_broker_errors",
                "Broker errors a component retried after (with backoff), by component.",
                ["component"],
                registry=registry,
            ),
            evidence_late=Counter(
                "kbwatch_evidence_late",
                "Facts older than what the fleet agent had already released: applied out of order.",
                registry=registry,
            ),
            evidence_replayed=Counter(
                "kbwatch_evidence_replayed",
                "Evidence records the fleet agent had already applied, handed over again after a "
                "crash or takeover, and skipped.",
                registry=registry,
            ),
            kb_installed=Gauge(
                "kbwatch_update_installed_devices",
                "Devices that installed the KB (newest KBs; the rest as kb=other).",
                ["kb"],
                registry=registry,
            ),
            kb_affected=Gauge(
                "kbwatch_update_affected_devices",
                "Devices that boot-looped or went silent within 72 h after installing the KB.",
                ["kb"],
                registry=registry,
            ),
            kb_recovered=Gauge(
                "kbwatch_update_recovered_devices",
                "Affected devices whose alerts have all resolved.",
                ["kb"],
                registry=registry,
            ),
            kb_failing=Gauge(
                "kbwatch_update_failing_devices",
                "Affected devices still failing (affected minus recovered).",
                ["kb"],
                registry=registry,
            ),
            boot_loops=Counter(
                "kbwatch_boot_loops",
                "PostUpdateBootLoop episodes that fired, by stop code (known codes, else other or unknown).",
                ["stop_code"],
                registry=registry,
            ),
            partitions=Gauge(
                "kbwatch_partitions_assigned",
                "Input partitions this worker's sieve reads, by topic kind.",
                ["source"],
                registry=registry,
            ),
            delivery_requests=Counter(
                "kbwatch_delivery_requests",
                "Posts to Alertmanager's /api/v2/alerts, by outcome (ok, error).",
                ["outcome"],
                registry=registry,
            ),
            delivery_alerts=Gauge(
                "kbwatch_delivery_alerts",
                "Alerts the delivery keeps Alertmanager told of: firing, and resolved ones being repeated.",
                ["state"],
                registry=registry,
            ),
            delivery_last_success=Gauge(
                "kbwatch_delivery_last_success_timestamp_seconds",
                "When every Alertmanager last took a post (Unix seconds).",
                registry=registry,
            ),
            build=Info("kbwatch_build", "Version of the running kbwatch.", registry=registry),
        )
        metrics.build.info({"version": __version__})
        for source in Source:
            for sifted in Sifted:
                metrics.records.labels(source.value, sifted.value)
        for kind in SignalKind:
            for applied in Applied:
                metrics.signals.labels(kind.value, applied.value)
        for rule in Catalog().alert_rules():
            for status in STATUSES:
                metrics.alerts.labels(rule.alertname, rule.severity, status)
        for evidence_kind in EvidenceKind:
            if evidence_kind is not EvidenceKind.PROGRESS:
                metrics.evidence.labels(evidence_kind.value)
        metrics.set_kb_gauges({}, (0, 0, 0, 0))
        for component in ("sieve", "startup"):
            metrics.broker_errors.labels(component)
        for outcome in ("ok", "error"):
            metrics.delivery_requests.labels(outcome)
        for code in stop_code_labels():
            metrics.boot_loops.labels(code)
        for source in Source:
            metrics.partitions.labels(source.value)
        for state in ("firing", "resolved"):
            metrics.delivery_alerts.labels(state)
        for reason in RejectReason:
            metrics.dlq.labels(reason.value)
        return metrics

    def set_kb_gauges(
        self, per_kb: dict[str, tuple[int, int, int, int]], other: tuple[int, int, int, int]
    ) -> None:
        """Replace the per-KB gauges: (installed, affected, recovered, failing) per KB."""
        gauges = (self.kb_installed, self.kb_affected, self.kb_recovered, self.kb_failing)
        for gauge in gauges:
            gauge.clear()
        for kb, values in [*per_kb.items(), (OTHER_KB, other)]:
            for gauge, value in zip(gauges, values, strict=True):
                gauge.labels(kb).set(value)
