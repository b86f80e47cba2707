"""`kbwatch validate`: tells a producer, record by record, what kbwatch makes of their data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, TextIO

from streams import codec
from streams.replay import source_of
from streams.sieve import Sieve, SieveResult, Sifted
from streams.signals import Signal, SignalKind
from streams.stopcodes import label
from streams.timeutil import to_rfc3339


def verdict(result: SieveResult) -> dict[str, Any]:
    """One record's fate as a small JSON object."""
    body: dict[str, Any] = {"outcome": _outcome(result), "format": result.input_format or "unknown"}
    if result.rejected is not None:
        body["reason"] = result.rejected.reason.value
        body["detail"] = result.rejected.detail
    elif result.signal is not None:
        body.update(_signal_fields(result.signal))
    return body


def validate(lines: Iterable[tuple[str, bytes]], sieve: Sieve, out: TextIO, as_json: bool) -> Counter[str]:
    """Write one verdict per record; return the count of each outcome."""
    counts: Counter[str] = Counter()
    for where, line in lines:
        for result in sieve.sift(source_of(line), line):
            report = verdict(result)
            counts[report["outcome"]] += 1
            if as_json:
                out.write(codec.dumps_line({"where": where, **report}).decode())
            else:
                out.write(f"{where}\t{_text(report)}\n")
    return counts


def _outcome(result: SieveResult) -> str:
    if result.sifted is Sifted.REJECTED:
        return "rejected"
    if result.sifted is Sifted.RELEVANT:
        return "accepted"
    return "irrelevant"


def _signal_fields(signal: Signal) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "as": signal.kind.value,
        "device": signal.device,
        "time": to_rfc3339(signal.time_ms),
    }
    if signal.kind in (SignalKind.DIRTY_BOOT, SignalKind.BUGCHECK):
        fields["stop_code"] = label(signal.stop_code)
    if signal.kb:
        fields["kb"] = signal.kb
    if signal.app:
        fields["app"] = signal.app
    return fields


def _text(report: dict[str, Any]) -> str:
    if report["outcome"] == "rejected":
        return f"rejected ({report['format']}): {report['reason']}: {report['detail']}"
    if report["outcome"] == "irrelevant":
        clock = f", device {report['device']} seen at {report['time']}" if "device" in report else ""
        return f"irrelevant ({report['format']}): no rule reads it{clock}"
    extras = " ".join(f"{key}={report[key]}" for key in ("stop_code", "kb", "app") if key in report)
    head = f"accepted ({report['format']}) as {report['as']}"
    return f"{head}: device {report['device']} at {report['time']} {extras}".rstrip()
