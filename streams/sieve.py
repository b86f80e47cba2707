"""The sieve: raw collector messages -> signals for the rules, or the DLQ.

This is the hot path: it sees every record of every device. Almost all are
noise to the rules, so a Winlogbeat record is first judged on the five fields
the rules look at, read lazily (`codec.Peeker`), and only records that may
matter are parsed whole. Only one irrelevant record per device per ten minutes of
event time goes on as a `seen` signal (the device's clock for resolving
alerts). Stateless apart from that throttle, which may be forgotten at any
time without changing a verdict: `seen` times are floored to the ten minutes,
so whichever record of those ten minutes gets through says the same. The
throttle remembers hours of each device's buckets (`streams.seen_buckets`),
because an unkeyed input's partitions are read hours apart in event time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from streams import codec
from streams.catalog import RELEVANT_EVENTS
from streams.codec import LazyObject
from streams.formats.detect import (
    Decoding,
    InputFormat,
    decode_events,
    decode_install,
    decode_xml,
    looks_like_xml,
)
from streams.formats.event import FieldError
from streams.outcomes import Ignored, Outcome, Rejected, RejectReason, Seen
from streams.seen_buckets import SeenBuckets
from streams.signals import Signal, SignalKind
from streams.timeutil import MINUTE_MS, BadTimestamp, parse_event_time, wall_clock_ms
from streams.winlogbeat import device_key_of

log = logging.getLogger(__name__)

SEEN_GRANULARITY_MS = 10 * MINUTE_MS
_MAX_TRACKED_DEVICES = 500_000
_WINLOG_KEY = b'"winlog"'


class Source(StrEnum):
    """Which input a message came from; values are `source` metric labels."""

    WINLOGBEAT = "winlogbeat"
    INSTALLS = "update_installs"


class Sifted(StrEnum):
    """What the sieve did with a message; values are `outcome` metric labels."""

    RELEVANT = "relevant"  # a signal for the rules
    SEEN = "seen"  # forwarded as the device's clock
    IRRELEVANT = "irrelevant"  # nothing for the rules
    REJECTED = "rejected"  # to the dead-letter topic


# Not frozen, for the same reason as `Signal`; never changed once built.
@dataclass(slots=True)
class SieveResult:
    """`signal` is set for RELEVANT and SEEN, `rejected` for REJECTED."""

    sifted: Sifted
    signal: Signal | None = None
    rejected: Rejected | None = None
    event_ms: int = 0  # the record's exact event time, where it was read
    input_format: str = ""  # the collector format it was read as ("" when unknown)


_IRRELEVANT = SieveResult(Sifted.IRRELEVANT)
# Nine Winlogbeat records in ten: one shared object, so the consumer loop knows it by identity.
WINLOGBEAT_NOISE = SieveResult(Sifted.IRRELEVANT, input_format="winlogbeat")

# provider -> the event ids the rules read, as Winlogbeat writes them (7.x numbers, 8.x strings).
RELEVANT_IDS: dict[str, frozenset[int | str]] = {}
for (_provider, _event_id), _kind in RELEVANT_EVENTS.items():
    RELEVANT_IDS[_provider] = RELEVANT_IDS.get(_provider, frozenset()) | {_event_id, str(_event_id)}


class Sieve:
    """Classifies raw messages; one instance per consumer, not thread-safe."""

    def __init__(
        self,
        max_message_bytes: int,
        clock: Callable[[], int] = wall_clock_ms,
        decoding: Decoding | None = None,
    ) -> None:
        self._max_message_bytes = max_message_bytes
        self._clock = clock
        self._decoding = decoding or Decoding()
        self._sent = SeenBuckets()
        self._device_of_id: dict[str, str] = {}  # `host.id` -> its checked device key
        self._peeker = codec.Peeker()
        # Asked of every message: decided once.
        forced = self._decoding.events_format
        self._xml_always = forced is InputFormat.XML
        self._xml_sniffed = forced is InputFormat.AUTO
        self._lazy_noise = forced in (InputFormat.AUTO, InputFormat.WINLOGBEAT)
        self._winlogbeat_last = True  # whether the last lazy read found a `winlog` object

    def forget_seen(self) -> None:
        """Forget which `seen` signals went out: they are sent again (after a rewind)."""
        self._sent.forget()

    def sift(self, source: Source, payload: bytes | None) -> list[SieveResult]:
        """Classify one message's value bytes: one result per record it holds.

        Never raises: a message that trips an unforeseen bug is dead-lettered
        with the error, so one bad message cannot stop the stream.
        """
        try:
            return self._sift(source, payload)
        except Exception as error:
            log.exception("a message could not be sifted; it goes to the dead-letter topic")
            return [_reject(RejectReason.BAD_VALUE, f"unexpected {type(error).__name__}: {error}"[:200])]

    def _sift(self, source: Source, payload: bytes | None) -> list[SieveResult]:
        if payload is None:
            return [_reject(RejectReason.NOT_JSON, "message has no value")]
        if len(payload) > self._max_message_bytes:
            return [_reject(RejectReason.TOO_LARGE, f"{len(payload)} bytes > {self._max_message_bytes}")]
        if source is Source.WINLOGBEAT:
            if self._xml_always or (self._xml_sniffed and looks_like_xml(payload)):
                now_ms = self._clock()
                return self._results(InputFormat.XML, decode_xml(payload, now_ms), now_ms)
            # A topic carries one collector's records as a rule. After a record of
            # another collector, look for `"winlog"` in the bytes before a lazy read
            # it would likely waste (skipping the lazy read is always safe: the whole
            # parse decides); after a Winlogbeat record, spare the search.
            if self._lazy_noise and (self._winlogbeat_last or _WINLOG_KEY in payload):
                noise = self._winlogbeat_noise(payload)
                if noise is not None:
                    return [noise]
        now_ms = self._clock()
        decoding = self._decoding
        try:
            document: Any = codec.loads(payload)
        except codec.DecodeError as error:
            return [_reject(RejectReason.NOT_JSON, str(error)[:200])]
        if source is Source.INSTALLS:
            install_format, outcomes = decode_install(document, decoding.installs_format, decoding, now_ms)
            return self._results(install_format, outcomes, now_ms)
        event_format, outcomes = decode_events(document, decoding.events_format, decoding, now_ms)
        return self._results(event_format, outcomes, now_ms)

    def _winlogbeat_noise(self, payload: bytes) -> SieveResult | None:
        """The hot path: a Winlogbeat record no rule reads, judged on a few lazily read fields.

        Returns None whenever the record might be relevant or invalid: the full
        path then parses it whole and decides, so both paths agree (but for a
        repeated key: `codec.Peeker`). No proxy of the document outlives the call.
        """
        document = self._peeker.peek(payload)
        if type(document) is not LazyObject:
            return None
        winlog = document.get("winlog")
        if type(winlog) is not LazyObject:
            self._winlogbeat_last = False
            return None
        self._winlogbeat_last = True
        provider, raw_id = winlog.get("provider_name"), winlog.get("event_id")
        valid_id = (
            type(raw_id) is str and raw_id.isdecimal() and len(raw_id) <= 5 and int(raw_id) <= 0xFFFF
        ) or (type(raw_id) is int and 0 <= raw_id <= 0xFFFF)
        if not valid_id or type(provider) is not str:
            return None
        event_ids = RELEVANT_IDS.get(provider)
        if event_ids is not None and raw_id in event_ids:
            return None
        stamp = document.get("@timestamp")
        if type(stamp) is not str:
            stamp = winlog.get("time_created")
        host = document.get("host")
        if type(host) is not LazyObject:
            host = None
        host_id = host.get("id") if host is not None else None
        device = self._device_of_id.get(host_id) if type(host_id) is str else None
        if device is None:
            name = host.get("name") if host is not None else None
            try:
                device = device_key_of(host_id, name, winlog.get("computer_name"))
            except FieldError:
                return None
            if device and type(host_id) is str and host_id.strip():
                # `host.id` alone named it: the same id names the same device next time.
                if len(self._device_of_id) >= _MAX_TRACKED_DEVICES:
                    self._device_of_id.clear()
                self._device_of_id[host_id] = device
        if type(stamp) is not str or not device:
            return WINLOGBEAT_NOISE
        if self._sent.sent(device, stamp):
            return WINLOGBEAT_NOISE
        name = host.get("name") if host is not None else None
        if not isinstance(name, str):
            name = winlog.get("computer_name")
        seen = Seen(device, name[:255] if isinstance(name, str) else "", stamp)
        # The clock only now: four records in five never need it.
        return self._new_seen(seen, self._clock(), InputFormat.WINLOGBEAT.value)

    def _results(self, found: InputFormat | None, outcomes: list[Outcome], now_ms: int) -> list[SieveResult]:
        label = found.value if found is not None else ""
        results = [self._result(outcome, now_ms) for outcome in outcomes]
        return [replace(result, input_format=label) for result in results] if label else results

    def _result(self, outcome: Outcome, now_ms: int) -> SieveResult:
        if isinstance(outcome, Signal):
            return SieveResult(Sifted.RELEVANT, signal=outcome, event_ms=outcome.time_ms)
        if isinstance(outcome, Seen):
            return self._seen(outcome, now_ms)
        if isinstance(outcome, Ignored):
            return _IRRELEVANT
        return SieveResult(Sifted.REJECTED, rejected=outcome)

    def _seen(self, seen: Seen, now_ms: int) -> SieveResult:
        if self._sent.sent(seen.device, seen.stamp):
            return _IRRELEVANT
        return self._new_seen(seen, now_ms)

    def _new_seen(self, seen: Seen, now_ms: int, input_format: str = "") -> SieveResult:
        """A `seen` whose bucket has not been sent: the signal, and the bucket remembered."""
        try:
            time_ms = parse_event_time(seen.stamp, now_ms)
        except BadTimestamp as error:
            return replace(_reject(RejectReason.BAD_TIMESTAMP, str(error)), input_format=input_format)
        self._sent.mark(seen.device, seen.stamp)
        floored = time_ms - time_ms % SEEN_GRANULARITY_MS
        signal = Signal(device=seen.device, kind=SignalKind.SEEN, time_ms=floored, host=seen.host)
        return SieveResult(Sifted.SEEN, signal=signal, event_ms=time_ms, input_format=input_format)


def _reject(reason: RejectReason, detail: str) -> SieveResult:
    return SieveResult(Sifted.REJECTED, rejected=Rejected(reason, detail))
