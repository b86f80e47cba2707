"""`kbwatch replay`: the live rules, offline, over NDJSON files in event time.

No broker and no wall clock in the rules: the same sieve and the same engine
the worker runs, driven by a loop over the lines. Users backtest with it, and
the tests prove live and replay agree through it.
"""

from __future__ import annotations

import gzip
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from streams import codec, dlq
from streams.alerts import Alert
from streams.catalog import Catalog
from streams.clock import FleetClock
from streams.engine import Engine, Output
from streams.fleet import FleetEngine
from streams.metrics import Metrics
from streams.sieve import Sieve, Sifted, Source
from streams.timeutil import wall_clock_ms

_PROGRESS_SECONDS = 0.5


@dataclass(slots=True)
class ReplaySummary:
    """What a replay saw, for the closing line and for callers."""

    records: int = 0
    relevant: int = 0
    rejected: int = 0
    alerts: list[Alert] = field(default_factory=list)


def source_of(line: bytes) -> Source:
    """A replay file may mix event records and install records (native or WUfB rows)."""
    if b'"winlog"' not in line and (b'"installed_at"' in line or b'"TargetKBNumber"' in line):
        return Source.INSTALLS
    return Source.WINLOGBEAT


def open_lines(path: str) -> BinaryIO:
    """`-` is standard input; `.gz` files are read through gzip."""
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def iter_lines(paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """(`file:line`, line bytes) for every non-empty line of every file."""
    with ExitStack() as stack:
        for path in paths:
            handle = stack.enter_context(open_lines(path)) if path != "-" else open_lines(path)
            for number, line in enumerate(handle, start=1):
                stripped = line.strip()
                if stripped:
                    yield f"{path}:{number}", stripped


def iter_files(paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """(file, its bytes) for every file: one message each, for binary formats that have no lines."""
    for path in paths:
        if path == "-":
            yield path, sys.stdin.buffer.read()
            continue
        with open_lines(path) as handle:
            yield path, handle.read()


def replay(
    lines: Iterable[tuple[str, bytes]],
    *,
    catalog: Catalog,
    sieve: Sieve,
    metrics: Metrics | None = None,
    alert_out: BinaryIO | None = None,
    dlq_out: BinaryIO | None = None,
    progress: BinaryIO | None = None,
) -> ReplaySummary:
    """Run every line through the sieve and the engine; write alerts and rejects."""
    metrics = metrics or Metrics.create()
    engine = Engine({}, catalog, metrics)
    fleet = FleetEngine({}, catalog, metrics)
    clock = FleetClock(catalog.silence.allowed_lateness_ms)
    now_ms = wall_clock_ms()
    summary = ReplaySummary()
    reporter = _Progress(progress)

    def send(output: Output) -> None:
        alerts = list(output.alerts)
        for evidence in output.evidence:
            alerts += fleet.process(evidence)
        for alert in alerts:
            summary.alerts.append(alert)
            if alert_out is not None:
                alert_out.write(codec.dumps_line(alert.to_json()))
                alert_out.flush()

    for where, line in lines:
        summary.records += 1
        source = source_of(line)
        for result in sieve.sift(source, line):
            metrics.records.labels(source.value, result.sifted.value).inc()
            if source is Source.WINLOGBEAT and result.signal is not None:
                # Install reports never move the fleet clock.
                clock.observe(result.event_ms, result.signal.device, now_ms)
            if result.rejected is not None:
                summary.rejected += 1
                metrics.dlq.labels(result.rejected.reason.value).inc()
                if dlq_out is not None:
                    dlq_out.write(codec.dumps_line(dlq.envelope(result.rejected, where, line)))
            elif result.signal is not None:
                if result.sifted is Sifted.RELEVANT:
                    summary.relevant += 1
                send(engine.process(result.signal))
        watermark = clock.due_tick()
        if watermark:
            send(engine.tick(watermark))
        reporter.tick(summary)
    reporter.finish(summary)
    return summary


class _Progress:
    """A one-line progress report on a terminal; silent otherwise."""

    def __init__(self, stream: BinaryIO | None) -> None:
        self._stream = stream
        self._started = time.monotonic()
        self._last = self._started

    def tick(self, summary: ReplaySummary) -> None:
        if self._stream is None or summary.records % 1024:
            return
        now = time.monotonic()
        if now - self._last >= _PROGRESS_SECONDS:
            self._last = now
            self._write(summary, now, end="\r")

    def finish(self, summary: ReplaySummary) -> None:
        if self._stream is not None:
            self._write(summary, time.monotonic(), end="\n")

    def _write(self, summary: ReplaySummary, now: float, end: str) -> None:
        assert self._stream is not None
        rate = summary.records / max(now - self._started, 1e-9)
        text = (
            f"replay: {summary.records:,} records ({rate:,.0f}/s), {summary.relevant:,} relevant, "
            f"{summary.rejected:,} rejected, {len(summary.alerts):,} alert changes{end}"
        )
        self._stream.write(text.encode())
        self._stream.flush()


def paths_exist(paths: Iterable[str]) -> list[str]:
    """The paths that are neither `-` nor an existing file (for a clear CLI error)."""
    return [path for path in paths if path != "-" and not Path(path).is_file()]
