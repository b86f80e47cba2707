"""End-to-end fixtures: one embedded broker per session, real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import codec
from streams.broker import EmbeddedBroker, free_port
from streams.demo import start_worker, stop_worker, wait_until_consuming
from streams.security import aiokafka_options
from streams.settings import Settings
from streams.topics import ensure_topics

WORKER_START_SECONDS = 60.0


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


def isolated_settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings isolated per test: own topics, own consumer groups, own port."""
    return Settings.from_env(
        {},
        broker=broker.bootstrap,
        partitions=4,
        web_port=free_port(),
        session_timeout_seconds=20.0,
        rebalance_timeout_seconds=6.0,
        data_dir=str(tmp_path / "data"),
        log_level="info",
    ).isolated(f"t{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def running_worker(settings: Settings, log_path: Path) -> Iterator[str]:
    """A `kbwatch worker` process; yields its /metrics URL; shows its log on failure."""
    asyncio.run(ensure_topics(settings))
    process = start_worker(settings, log_path)
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    try:
        wait_until_consuming(url, process, WORKER_START_SECONDS)
        yield url
    except BaseException:
        print(log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        code = stop_worker(process)
        assert code == 0 or code == -15, f"worker exit code {code}"


async def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers(), **aiokafka_options(settings))
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume_until(
    settings: Settings,
    topic: str,
    done: Any,
    timeout: float = 60.0,
    quiet_seconds: float = 0.0,
    strict: bool = True,
) -> list[Any]:
    """Read `topic` from the start until `done(messages)` holds (and `quiet_seconds` pass without news).

    On timeout, raise; or with `strict=False` return what was read, for a more telling assertion.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers(),
        auto_offset_reset="earliest",
        **aiokafka_options(settings),
    )
    await consumer.start()
    messages: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_news = loop.time()
    try:
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                messages.extend(records)
                last_news = loop.time()
            if done(messages) and loop.time() - last_news >= quiet_seconds:
                return messages
        if not strict:
            return messages  # the caller says what differs
        raise AssertionError(f"timed out on {topic} with {len(messages)} messages")
    finally:
        await consumer.stop()


def alerts_of(messages: list[Any]) -> list[dict[str, Any]]:
    return [codec.loads(message.value) for message in messages]
