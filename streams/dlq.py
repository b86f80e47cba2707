"""The dead-letter contract: the original bytes plus why they were refused.

On Kafka (`kbwatch-dlq`) the value is the original message, untouched, and
the reason travels in headers, so a producer can re-send a fixed message as
is. In files (`kbwatch replay --dlq`) each line is a JSON envelope.
Schema of the envelope: `schemas/dlq-envelope.schema.json`.
"""

from __future__ import annotations

import base64
from typing import Any

from streams.outcomes import Rejected

HEADER_REASON = "kbwatch-reason"
HEADER_DETAIL = "kbwatch-detail"
HEADER_SOURCE_TOPIC = "kbwatch-source-topic"
HEADER_SOURCE_PARTITION = "kbwatch-source-partition"
HEADER_SOURCE_OFFSET = "kbwatch-source-offset"


def kafka_headers(rejected: Rejected, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Headers for a dead-lettered Kafka message."""
    return [
        (HEADER_REASON, rejected.reason.value.encode()),
        (HEADER_DETAIL, rejected.detail.encode("utf-8", "replace")[:1024]),
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
    ]


def envelope(rejected: Rejected, source: str, original: bytes | None) -> dict[str, Any]:
    """The JSON envelope for a dead-lettered line of a file."""
    body: dict[str, Any] = {
        "reason": rejected.reason.value,
        "detail": rejected.detail,
        "source": source,
    }
    raw = original or b""
    try:
        body["original"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        body["original_base64"] = base64.b64encode(raw).decode("ascii")
    return body
