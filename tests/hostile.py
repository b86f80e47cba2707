"""A few thousand hostile messages, each with the dead-letter reason it must get (None: handled)."""

from __future__ import annotations

import copy
import random
from typing import Any

from streams import codec, documents
from streams.collectors import render
from streams.formats.detect import InputFormat
from tests.builders import T0

_HOST = documents.Host(host_id="bad-host-0000", name="BAD-HOST")


def hostile_messages(count: int = 2000, seed: int = 13, start_ms: int = T0) -> list[tuple[bytes, str | None]]:
    """(payload, expected reason) pairs; reason None means accepted or irrelevant, never a DLQ.

    The accepted ones are noise from invented devices, one a second from `start_ms`.
    """
    rng = random.Random(seed)
    crash = documents.kernel_power_41(_HOST, start_ms, 1, 395)
    makers = [
        lambda i: (b"\xff\xfe\x00 not json " + str(i).encode(), "not_json"),
        lambda i: (b'{"winlog": {"event_id": NaN}, "n": %d}' % i, "not_json"),
        lambda i: (b"[" * 1500 + b"]" * 1500, "not_json"),
        lambda i: (b'"a string %d"' % i, "not_object"),
        lambda i: (b'{"x": "' + b"y" * 300_000 + b'"}', "too_large"),
        lambda i: (codec.dumps({"unknown": i}), "unknown_format"),
        lambda i: (_mutated(crash, i, ("winlog", "event_data", "BugcheckCode"), "lots"), "bad_value"),
        lambda i: (_mutated(crash, i, ("winlog", "event_data", "BugcheckCode"), None), "missing_field"),
        lambda i: (_mutated(crash, i, ("winlog", "event_id"), True), "bad_event_id"),
        lambda i: (_mutated(crash, i, ("@timestamp",), "2999-01-01T00:00:00Z"), "bad_timestamp"),
        lambda i: (_mutated(crash, i, ("@timestamp",), "1999-01-01T00:00:00Z"), "bad_timestamp"),
        lambda i: (_mutated(crash, i, ("host", "id"), f"evil\x07{i}"), "bad_device"),
        lambda i: (b'<!DOCTYPE x [<!ENTITY a "b">]><Event>&a;</Event>', "bad_value"),
        lambda i: (codec.dumps(_invented_noise_document(i, start_ms)), None),
        lambda i: (codec.dumps(render(_invented_noise_document(i, start_ms), InputFormat.NXLOG)), None),
        # A newline first, as an OTLP protobuf request begins, and yet not one.
        lambda i: (b"\n\x07garbage" + str(i).encode(), "not_json"),
        lambda i: (render(_invented_noise_document(i, start_ms), InputFormat.OTLP_PROTO), None),
    ]
    return [makers[rng.randrange(len(makers))](index) for index in range(count)]


def _mutated(document: dict[str, Any], index: int, path: tuple[str, ...], value: object) -> bytes:
    changed = copy.deepcopy(document)
    changed["winlog"]["record_id"] = 10_000 + index
    target = changed
    for key in path[:-1]:
        target = target[key]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return codec.dumps(changed)


def _invented_noise_document(index: int, start_ms: int) -> dict[str, Any]:
    host = documents.Host(host_id=f"invented-{index}", name=f"INVENTED-{index}")
    return documents.security_4624(host, start_ms + index * 1000, index, "mallory")
