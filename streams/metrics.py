"""Every Prometheus metric the product exports, declared against one registry.

Names are a contract (README, "Metrics"): one `kbwatch_` prefix, base units,
`_total` counters, and labels only from small known sets. No device or host
label, ever: anyone who can write to the input topic could explode it.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from streams import __version__
from streams.detector import Applied
from streams.outcomes import RejectReason
from streams.sieve import Sifted, Source
from streams.signals import SignalKind

ALERTNAMES = ("PostUpdateBootLoop",)
SEVERITIES = ("critical", "warning")
STATUSES = ("firing", "resolved")


@dataclass(frozen=True, slots=True)
class Metrics:
    """The product's metrics; create with `Metrics.create(registry)`."""

    registry: CollectorRegistry
    records: Counter
    signals: Counter
    crash_boots: Counter
    alerts: Counter
    dlq: Counter
    devices_tracked: Gauge
    devices_expired: Counter
    newest_event_time: Gauge
    event_time_lag: Gauge
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
            build=Info("kbwatch_build", "Version of the running kbwatch.", registry=registry),
        )
        metrics.build.info({"version": __version__})
        for source in Source:
            for sifted in Sifted:
                metrics.records.labels(source.value, sifted.value)
        for kind in SignalKind:
            for applied in Applied:
                metrics.signals.labels(kind.value, applied.value)
        for alertname in ALERTNAMES:
            for severity in SEVERITIES:
                for status in STATUSES:
                    metrics.alerts.labels(alertname, severity, status)
        for reason in RejectReason:
            metrics.dlq.labels(reason.value)
        return metrics
