"""The Faust application, built in exactly one place from one settings object."""

from __future__ import annotations

from pathlib import Path

import faust

from streams.security import faust_credentials
from streams.settings import Settings
from streams.signals import MAX_SEEN_PER_MESSAGE

# Faust holds table changelog writes in a buffer, and past 100 of them it stops the agent
# until they are sent, with a "producer buffer full" warning each time. One `seen_many`
# writes the state of each device it names (up to MAX_SEEN_PER_MESSAGE) and as many
# silence watches: with room for those, the warning means the sends have fallen behind,
# not that a worker catching up on a backlog applied one message.
PRODUCER_BUFFER_MESSAGES = 2 * MAX_SEEN_PER_MESSAGE


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured for kbwatch; agents are attached by `streams.worker`."""
    # Faust creates only the last level of its data directory.
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers().split(",")],
        store=settings.store,
        datadir=str(Path(settings.data_dir) / settings.app_id),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_rebalance_timeout=settings.rebalance_timeout_seconds,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_seconds / 3),
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        producer_linger_ms=5,
        producer_acks=-1,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        broker_credentials=faust_credentials(settings),
    )
    # Faust has no setting for it. Its consumer still flushes the buffer before each commit.
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
    return app
