"""Fakes for aiokafka at the sieve's seam: a consumer and a producer that remember.

The broker's side (fetches, rebalances, acknowledgements) is covered by the
end-to-end tests; these let the sieve's loop be driven batch by batch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

from streams import codec, documents
from streams.signals import Signal, SignalKind
from tests.builders import HOST


@dataclass(frozen=True)
class Message:
    offset: int
    value: bytes
    key: bytes | None = None


@dataclass
class Consumer:
    assigned: set[TopicPartition]
    ends: dict[TopicPartition, int]
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    positions: dict[TopicPartition, int] = field(default_factory=dict)  # where a seek left each

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Message]]:
        return {}  # the tests hand the sieve its batches themselves

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.ends.get(partition)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    async def committed(self, partition: TopicPartition) -> int | None:
        offsets = [commit[partition] for commit in self.commits if partition in commit]
        return offsets[-1] if offsets else None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    async def seek_to_beginning(self, partition: TopicPartition) -> None:
        self.positions[partition] = 0


@dataclass
class Producer:
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    acks_at_once: bool = True  # else each send waits in `unacked` for the test to acknowledge it
    unacked: list[asyncio.Future[None]] = field(default_factory=list)

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, value))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.acks_at_once:
            ack.set_result(None)
        else:
            self.unacked.append(ack)
        return ack

    def acknowledge(self) -> None:
        for ack in self.unacked:
            ack.set_result(None)
        self.unacked.clear()

    def signals(self, signals_topic: str) -> list[Signal]:
        return [Signal.from_wire(value) for topic, value in self.sent if topic == signals_topic]


def noise(at_ms: int, offset: int, host: documents.Host = HOST) -> Message:
    """A logon: no alerting signal, but it tells the device's clock (a `seen`)."""
    return Message(offset, codec.dumps(documents.security_4624(host, at_ms, offset, "alice")))


def seen_devices(producer: Producer, signals_topic: str) -> list[str]:
    devices = []
    for signal in producer.signals(signals_topic):
        if signal.kind is SignalKind.SEEN_MANY:
            devices += [device for device, _, _ in signal.seen]
    return devices
