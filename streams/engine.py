"""Runs the detector over stored device states: the body of the device agent.

The states live in any mutable mapping from device key to encoded state: the
Faust table in a worker, a dict in `kbwatch replay`. Both therefore run the
very same code path, which is what makes live and replay agree.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from streams.alerts import Alert
from streams.catalog import Catalog
from streams.detector import apply, is_expired
from streams.device import DeviceState
from streams.metrics import Metrics
from streams.signals import Signal


class Engine:
    """Applies signals to device states and counts what happened."""

    def __init__(self, states: MutableMapping[str, bytes], catalog: Catalog, metrics: Metrics) -> None:
        self.states = states
        self.catalog = catalog
        self.metrics = metrics
        # The newest event time any signal carried here: the clock that
        # expires idle devices, so that forgetting happens in event time.
        self.fleet_time_ms = 0

    def process(self, signal: Signal) -> list[Alert]:
        """Apply one signal; return the alert state changes it caused."""
        stored = self.states.get(signal.device)
        state = DeviceState.from_wire(stored) if stored is not None else None
        result = apply(state, signal, self.catalog)
        self.states[signal.device] = result.state.to_wire()
        if stored is None:
            self.metrics.devices_tracked.inc()
        self.fleet_time_ms = max(self.fleet_time_ms, signal.time_ms)
        self.metrics.signals.labels(signal.kind.value, result.applied.value).inc()
        if result.new_crash_boots:
            self.metrics.crash_boots.inc(result.new_crash_boots)
        for alert in result.alerts:
            self.metrics.alerts.labels(
                alert.labels["alertname"], alert.labels["severity"], alert.status
            ).inc()
        return result.alerts

    def sweep(self) -> int:
        """Forget idle devices far behind the fleet clock; return how many."""
        expired = [
            device
            for device, stored in list(self.states.items())
            if is_expired(DeviceState.from_wire(stored), self.fleet_time_ms, self.catalog)
        ]
        for device in expired:
            del self.states[device]
        self.metrics.devices_expired.inc(len(expired))
        self.metrics.devices_tracked.set(len(self.states))
        return len(expired)
