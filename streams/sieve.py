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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeGuard

from streams import codec
from streams.catalog import RELEVANT_EVENTS
from streams.codec import LazyObject
from streams.formats.detect import (
    Decoding,
    InputFormat,
    decode_events,
    decode_install,
    decode_otlp_proto,
    decode_xml,
    looks_like_xml,
    sniff_otlp_proto,
)
from streams.formats.event import FieldError
from streams.formats.otlp_proto import may_be_otlp_proto
from streams.outcomes import Ignored, Outcome, Rejected, RejectReason, Seen
from streams.seen_buckets import SeenBuckets
from streams.signals import Signal, SignalKind
from streams.timeutil import MINUTE_MS, BadTimestamp, parse_event_time, wall_clock_ms
from streams.winlogbeat import device_key_of

log = logging.getLogger(__name__)

SEEN_GRANULARITY_MS = 10 * MINUTE_MS
_MAX_TRACKED_DEVICES = 500_000
_WINLOG_KEY = b'"winlog"'
# Bounds on the memory of noise event ids: a stream that invents providers or
# ids only costs the checks again, never memory.
_MAX_NOISE_PROVIDERS = 10_000
_MAX_NOISE_IDS_PER_PROVIDER = 1_000


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
_WINLOGBEAT = InputFormat.WINLOGBEAT.value  # read once: an enum member's value is a descriptor call
# Four Winlogbeat records in five: one shared result, and one shared sequence of it,
# so the consumer loop knows such a record by identity.
WINLOGBEAT_NOISE = SieveResult(Sifted.IRRELEVANT, input_format=_WINLOGBEAT)
ONLY_WINLOGBEAT_NOISE: tuple[SieveResult] = (WINLOGBEAT_NOISE,)

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
        self._proto_always = forced is InputFormat.OTLP_PROTO
        self._proto_sniffed = forced is InputFormat.AUTO
        self._lazy_noise = forced in (InputFormat.AUTO, InputFormat.WINLOGBEAT)
        self._winlogbeat_last = True  # whether the last lazy read found a `winlog` object
        # provider -> event ids already judged valid and read by no rule. A cache of the
        # pure `_is_noise_id`: one set lookup instead of the checks, for most records.
        self._noise_ids: dict[str, set[str | int]] = {}

    def forget_seen(self) -> None:
        """Forget which `seen` signals went out: they are sent again (after a rewind)."""
        self._sent.forget()

    def sift(self, source: Source, payload: bytes | None) -> Sequence[SieveResult]:
        """Classify one message's value bytes: one result per record it holds.

        A Winlogbeat record no rule reads comes back as `ONLY_WINLOGBEAT_NOISE`, always
        the same object.

        Never raises: a message that trips an unforeseen bug is dead-lettered
        with the error, so one bad message cannot stop the stream.
        """
        try:
            return self._sift(source, payload)
        except Exception as error:
            log.exception("a message could not be sifted; it goes to the dead-letter topic")
            return [_reject(RejectReason.BAD_VALUE, f"unexpected {type(error).__name__}: {error}"[:200])]

    def _sift(self, source: Source, payload: bytes | None) -> Sequence[SieveResult]:
        if payload is None:
            return [_reject(RejectReason.NOT_JSON, "message has no value")]
        if len(payload) > self._max_message_bytes:
            return [_reject(RejectReason.TOO_LARGE, f"{len(payload)} bytes > {self._max_message_bytes}")]
        if source is Source.WINLOGBEAT:
            # Nearly every record opens with `{`: no need to sniff it for XML.
            if self._xml_always or (self._xml_sniffed and payload[:1] != b"{" and looks_like_xml(payload)):
                now_ms = self._clock()
                return self._results(InputFormat.XML, decode_xml(payload, now_ms), now_ms)
            # A topic carries one collector's records as a rule. After a record of
            # another collector, look for `"winlog"` in the bytes before a lazy read
            # it would likely waste (skipping the lazy read is always safe: the whole
            # parse decides); after a Winlogbeat record, spare the search.
            if self._lazy_noise and (self._winlogbeat_last or _WINLOG_KEY in payload):
                noise = self._winlogbeat_noise(payload)
                if noise is WINLOGBEAT_NOISE:
                    return ONLY_WINLOGBEAT_NOISE
                if noise is not None:
                    return [noise]
        now_ms = self._clock()
        if self._proto_always and source is Source.WINLOGBEAT:
            return self._results(InputFormat.OTLP_PROTO, decode_otlp_proto(payload, now_ms), now_ms)
        decoding = self._decoding
        try:
            document: Any = codec.loads(payload)
        except codec.DecodeError as error:
            if self._proto_sniffed and source is Source.WINLOGBEAT and may_be_otlp_proto(payload):
                # Not JSON, so perhaps the OpenTelemetry exporter's default encoding;
                # what is not a request either stays a message that is not JSON.
                outcomes = sniff_otlp_proto(payload, now_ms)
                if outcomes is not None:
                    return self._results(InputFormat.OTLP_PROTO, outcomes, now_ms)
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
        if type(provider) is not str:
            return None
        noise_ids = self._noise_ids.get(provider)
        # Only a `str` or an `int` is looked up: `True == 1` and `4624.0 == 4624`, and
        # the full parse judges those apart from the id they equal.
        id_type = type(raw_id)
        if noise_ids is None or (id_type is not str and id_type is not int) or raw_id not in noise_ids:
            if not _is_noise_id(raw_id, provider):
                return None
            self._remember_noise_id(provider, raw_id, noise_ids)
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
        # The clock only now: four records in five never need it.
        host_name = name[:255] if isinstance(name, str) else ""
        return self._new_seen(device, host_name, stamp, self._clock(), _WINLOGBEAT)

    def _remember_noise_id(self, provider: str, raw_id: str | int, noise_ids: set[str | int] | None) -> None:
        """Remember a noise id of `provider` (whose set is `noise_ids`, None if it has none yet).

        Past the bounds nothing more is remembered: nothing is forgotten either, since a
        provider's ids do not change meaning, and what is not remembered is only checked again.
        """
        if noise_ids is None:
            if len(self._noise_ids) >= _MAX_NOISE_PROVIDERS:
                return
            noise_ids = self._noise_ids[provider] = set()
        if len(noise_ids) < _MAX_NOISE_IDS_PER_PROVIDER:
            noise_ids.add(raw_id)

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
        return self._new_seen(seen.device, seen.host, seen.stamp, now_ms)

    def _new_seen(
        self, device: str, host: str, stamp: str, now_ms: int, input_format: str = ""
    ) -> SieveResult:
        """A `seen` whose bucket has not been sent: the signal, and the bucket remembered."""
        try:
            time_ms = parse_event_time(stamp, now_ms)
        except BadTimestamp as error:
            return replace(_reject(RejectReason.BAD_TIMESTAMP, str(error)), input_format=input_format)
        self._sent.mark(device, stamp)
        floored = time_ms - time_ms % SEEN_GRANULARITY_MS
        signal = Signal(device=device, kind=SignalKind.SEEN, time_ms=floored, host=host)
        return SieveResult(Sifted.SEEN, signal=signal, event_ms=time_ms, input_format=input_format)


def _is_noise_id(raw_id: object, provider: str) -> TypeGuard[str | int]:
    """Whether `raw_id` is a valid event id (0-65535, a number or its digits) no rule reads."""
    valid = (type(raw_id) is str and raw_id.isdecimal() and len(raw_id) <= 5 and int(raw_id) <= 0xFFFF) or (
        type(raw_id) is int and 0 <= raw_id <= 0xFFFF
    )
    if not valid:
        return False
    event_ids = RELEVANT_IDS.get(provider)
    return event_ids is None or raw_id not in event_ids


def _reject(reason: RejectReason, detail: str) -> SieveResult:
    return SieveResult(Sifted.REJECTED, rejected=Rejected(reason, detail))
