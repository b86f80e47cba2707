"""The internal record: one fact about one device, whatever collector sent it.

The sieve turns raw collector documents into `Signal`s keyed by device on the
`kbwatch-signals` topic; the device agent and `kbwatch replay` consume them.
The wire form is a small JSON object with short keys, because every relevant
record of the fleet crosses the broker once more in this form.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiokafka.partitioner import murmur2

from streams import codec
from streams.watermarks import Coverage

# What a `seen_many` carries of each `seen`: (device, time_ms, host).
SeenEntry = tuple[str, int, str]

# Entries per `seen_many`: at 150 bytes an entry (long device and host names) 300 KB,
# well under the 1 MB a broker and producer accept by default.
MAX_SEEN_PER_MESSAGE = 2_000


class SignalKind(StrEnum):
    """What a record tells the rules. Values are part of the signals topic contract."""

    INSTALL = "install"  # a successful update install (WindowsUpdateClient 19, native)
    BOOT_START = "boot"  # Kernel-General 12: the OS started
    DIRTY_BOOT = "dirty"  # Kernel-Power 41 that is not a held power button
    FORCED_OFF = "forced"  # Kernel-Power 41 caused by a person holding the button
    BUGCHECK = "bugcheck"  # WER-SystemErrorReporting 1001: a crash dump was written
    HELLO_FAILURE = "hello_fail"  # Windows Hello could not be used
    HELLO_SUCCESS = "hello_ok"  # Windows Hello worked
    APP_CRASH = "app_crash"  # Application Error 1000, `app` says which
    RESTART = "restart"  # User32 1074 of kind restart: a planned restart began
    POWER_OFF = "power_off"  # User32 1074 of kind power off
    SEEN = "seen"  # any other record: the device's event time has reached t
    SEEN_MANY = "seen_many"  # `seen` of several devices of one partition, in one message
    TICK = "tick"  # not about a device: the fleet's event time (watermark) is t


# Not frozen, but never changed once built (`dataclasses.replace` makes a new one): a
# frozen dataclass sets each of its 13 fields through `object.__setattr__`, 1.7 µs a
# Signal against 0.5 µs, and a worker builds two for every `seen`
# (docs/performance-history.md, 0.8.6).
@dataclass(slots=True)
class Signal:
    """One normalised fact. `time_ms` is the record's event time (UTC epoch ms)."""

    device: str
    kind: SignalKind
    time_ms: int
    host: str = ""
    record_key: str = ""  # channel/record_id: the at-least-once dedupe key
    stop_code: int = 0  # bugcheck code, for DIRTY_BOOT and BUGCHECK
    kb: str = ""  # for INSTALL
    build: str = ""  # OS build as the collector saw it, e.g. 26100.3775
    arch: str = ""  # x86_64, arm64, ...
    source: str = ""  # which input produced an INSTALL
    app: str = ""  # lower-cased executable name, for APP_CRASH
    coverage: Coverage | None = None  # for TICK: the input partitions it speaks for (None: all)
    seen: tuple[SeenEntry, ...] = ()  # for SEEN_MANY

    def to_wire(self) -> bytes:
        """Encode for the signals topic (empty fields left out)."""
        wire: dict[str, Any] = {"d": self.device, "k": self.kind.value, "t": self.time_ms}
        for key, value in (
            ("h", self.host),
            ("r", self.record_key),
            ("c", self.stop_code),
            ("kb", self.kb),
            ("b", self.build),
            ("a", self.arch),
            ("s", self.source),
            ("p", self.app),
        ):
            if value:
                wire[key] = value
        if self.seen:
            wire["m"] = self.seen  # orjson writes a tuple as the same array as a list
        if self.coverage is not None:
            wire["w"] = list(self.coverage.partitions)
            wire["n"] = self.coverage.total
            if self.coverage.idle:
                wire["i"] = 1
        return codec.dumps(wire)

    @classmethod
    def from_wire(cls, payload: bytes) -> Signal:
        """Decode what `to_wire` wrote; raises ValueError/KeyError on anything else."""
        wire = codec.loads(payload)
        coverage = None
        if "w" in wire:
            partitions = tuple(int(partition) for partition in wire["w"])
            coverage = Coverage(partitions, int(wire["n"]), bool(wire.get("i", 0)))
        seen = tuple([(str(device), int(time_ms), str(host)) for device, time_ms, host in wire.get("m", ())])
        return cls(
            device=str(wire["d"]),
            kind=SignalKind(wire["k"]),
            time_ms=int(wire["t"]),
            host=str(wire.get("h", "")),
            record_key=str(wire.get("r", "")),
            stop_code=int(wire.get("c", 0)),
            kb=str(wire.get("kb", "")),
            build=str(wire.get("b", "")),
            arch=str(wire.get("a", "")),
            source=str(wire.get("s", "")),
            app=str(wire.get("p", "")),
            coverage=coverage,
            seen=seen,
        )

    def expand(self) -> list[Signal]:
        """The device signals a message carries: itself, or each `seen` of a SEEN_MANY."""
        if self.kind is not SignalKind.SEEN_MANY:
            return [self]
        return [
            Signal(device=device, kind=SignalKind.SEEN, time_ms=time_ms, host=host)
            for device, time_ms, host in self.seen
        ]


def seen_many(entries: list[SeenEntry]) -> Signal:
    """Several `seen` signals (of devices of one partition) as one message: (device, time_ms, host) each.

    In the benchmark's fleet stream 96 % of signals are `seen`, and most name a
    device without state, which the device agent drops at once: one message per
    partition and batch spares the broker and Faust's per-event path nearly all.
    """
    newest = max(time_ms for _, time_ms, _ in entries)
    return Signal(device="", kind=SignalKind.SEEN_MANY, time_ms=newest, seen=tuple(entries))


class SeenBatch:
    """The `seen` signals waiting to be sent, each once, as `seen_many` messages per signals partition.

    An unkeyed input holds a device on every input partition, so the sieve's
    throttle passes a ten-minute bucket once per input partition. A repeat is
    left out: it would go in a `seen_many` with the one kept, or after it, and
    a `seen` applied again changes nothing, whatever came between
    (tests/test_engine_batches.py, tests/test_interleaving.py).
    """

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._entries: set[SeenEntry] = set()
        # Each partition's entries as they go on the wire: no `Signal` is made again from them.
        self._by_partition: dict[int, list[SeenEntry]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, signal: Signal) -> bool:
        """Take a `seen` signal; False when the batch already holds the same one."""
        entry = (signal.device, signal.time_ms, signal.host)
        if entry in self._entries:
            return False
        self._entries.add(entry)
        self._by_partition.setdefault(partition_of(signal.device, self._partitions), []).append(entry)
        return True

    def messages(self) -> list[tuple[int, Signal]]:
        """(signals partition, `seen_many`) to send, at most `MAX_SEEN_PER_MESSAGE` entries each.

        Bounded so that a message stays below the broker's size limit however
        many `seen` signals the sieve let wait.
        """
        return [
            (partition, seen_many(entries[start : start + MAX_SEEN_PER_MESSAGE]))
            for partition, entries in self._by_partition.items()
            for start in range(0, len(entries), MAX_SEEN_PER_MESSAGE)
        ]

    def clear(self) -> None:
        """Forget what it holds: sent, or to be read again."""
        self._entries.clear()
        self._by_partition.clear()


@functools.lru_cache(maxsize=1 << 18)
def partition_of(device: str, partitions: int) -> int:
    """The signals partition of a device: what the producer's default partitioner picks for its key.

    Cached: it runs for every `seen` signal, and murmur2 is pure Python in aiokafka.
    """
    hashed: int = murmur2(device.encode())
    return (hashed & 0x7FFFFFFF) % partitions
