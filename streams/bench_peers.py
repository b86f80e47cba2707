"""The peers `kbwatch bench` measures kbwatch against, each doing the same job.

The job: read every record of a topic of Winlogbeat documents, decode it, and
for the relevant ones (the providers kbwatch's rules read) update a per-device
state. Run as `python -m streams.bench_peers faust|quix BROKER TOPIC COUNT`;
each prints one JSON line with its records per second, first record to last,
and before it one line per `PROGRESS_RECORDS` read, so that the bench can tell
a long run from a stuck one. The progress check replaces the check for the last
record: a peer does no more per record for it.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

import orjson

from streams.catalog import RELEVANT_EVENTS

RELEVANT_PROVIDERS = frozenset(provider for provider, _ in RELEVANT_EVENTS)
PROGRESS_RECORDS = 50_000


def device_of(document: dict[str, Any]) -> str:
    host = document.get("host") or {}
    return str(host.get("id") or host.get("name") or "")


def relevant(document: dict[str, Any]) -> bool:
    return (document.get("winlog") or {}).get("provider_name") in RELEVANT_PROVIDERS


def run_faust(broker: str, topic: str, count: int, partitions: int) -> None:
    """A plain faust-streaming agent with a table, the way Faust's documentation teaches."""
    import faust

    app = faust.App(
        f"bench-faust-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{broker}",
        store="memory://",
        value_serializer="raw",
        topic_partitions=partitions,
        broker_session_timeout=10,
        broker_rebalance_timeout=10,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    source = app.topic(topic, value_type=bytes)
    devices = app.Table("bench-devices", default=int, partitions=partitions)
    seen = {"count": 0, "first": 0.0}
    mark = _next_mark(0, count)

    @app.agent(source)
    async def per_record(stream: Any) -> None:
        nonlocal mark
        async for value in stream:
            if not seen["count"]:
                seen["first"] = time.perf_counter()
            document = orjson.loads(value)
            if relevant(document):
                devices[device_of(document)] += 1
            seen["count"] += 1
            if seen["count"] == mark:
                mark = _at_mark("faust", mark, count, seen["first"])
                if not mark:
                    # The figure is out; a graceful stop would wait on this very agent.
                    os._exit(0)

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.execute_from_commandline()


def run_quix(broker: str, topic: str, count: int, partitions: int) -> None:
    """Quix Streams (librdkafka) with its own state store doing the same job."""
    from quixstreams import Application

    app = Application(
        broker_address=broker,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        state_dir="bench-quix-state",  # in the working directory the bench gives it
        loglevel="WARNING",
    )
    source = app.topic(topic, value_deserializer="bytes", key_deserializer="bytes")
    seen = {"count": 0, "first": 0.0}
    mark = _next_mark(0, count)

    def decode(value: bytes) -> Any:
        nonlocal mark
        if not seen["count"]:
            seen["first"] = time.perf_counter()
        seen["count"] += 1
        document = orjson.loads(value)
        if seen["count"] == mark:
            mark = _at_mark("quix", mark, count, seen["first"])
            if not mark:
                app.stop()
        return document

    def update(document: Any, state: Any) -> None:
        state.set(device_of(document), (state.get(device_of(document)) or 0) + 1)

    frame = app.dataframe(source)
    frame = frame.apply(decode).filter(relevant)
    frame = frame.group_by(device_of, name="device")
    frame.update(update, stateful=True)
    app.run()


def _next_mark(mark: int, count: int) -> int:
    """The next count at which a peer reports: progress, or the last record's figure."""
    return min(count, mark + PROGRESS_RECORDS)


def _at_mark(peer: str, mark: int, count: int, first: float) -> int:
    """Report the records read at `mark`, or the figure at the last one; the next mark (0: done)."""
    if mark < count:
        print(orjson.dumps({"peer": peer, "read": mark}).decode(), flush=True)
        return _next_mark(mark, count)
    _report(peer, count, time.perf_counter() - first)
    return 0


def _report(peer: str, count: int, seconds: float) -> None:
    print(
        orjson.dumps(
            {"peer": peer, "records": count, "seconds": seconds, "records_per_second": count / seconds}
        ).decode(),
        flush=True,
    )


if __name__ == "__main__":
    mode, broker_address, topic_name = sys.argv[1], sys.argv[2], sys.argv[3]
    total, partition_count = int(sys.argv[4]), int(sys.argv[5])
    {"faust": run_faust, "quix": run_quix}[mode](broker_address, topic_name, total, partition_count)
