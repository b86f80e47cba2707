"""The one place that turns bytes into Python values and back (orjson, simdjson)."""

from __future__ import annotations

from typing import Any

import orjson
import simdjson

DecodeError = orjson.JSONDecodeError
# What `Peeker.peek` gives for a JSON object: read its fields with `.get(key)`.
LazyObject = simdjson.Object
_BOM = b"\xef\xbb\xbf"


def loads(payload: bytes | str) -> Any:
    """Parse JSON; raises `DecodeError` on anything that is not strict JSON."""
    return orjson.loads(payload)


def dumps(value: Any) -> bytes:
    """Compact JSON with sorted keys, so equal values give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def dumps_line(value: Any) -> bytes:
    """One JSON line (NDJSON) for files and stdout."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


class Peeker:
    """Reads a few fields of a JSON document without building all of it (simdjson).

    For the sieve's hot path, where a record is judged on five fields of about
    fifty: `loads` builds every one as a Python object, this builds only what
    is read, in less than half the time (README, Performance). It accepts what
    `loads` accepts, and declines (None) where the two differ, so the caller
    can fall back on `loads`: anything simdjson refuses, including integers
    beyond 64 bits (which orjson reads as floats), and a leading byte order
    mark (which simdjson skips and orjson refuses). One difference is left: a
    key repeated in one object reads as its first occurrence here and as its
    last in `loads`.

    The returned proxy reads from the parser's buffer: drop it before the next
    `peek` (a local variable of the caller is enough). Not thread-safe.
    """

    def __init__(self) -> None:
        self._parser = simdjson.Parser()

    def peek(self, payload: bytes) -> Any:
        """The document, lazily: a `LazyObject` for an object; None when declined."""
        if payload.startswith(_BOM):
            return None
        try:
            return self._parser.parse(payload)
        except (ValueError, RuntimeError):
            # Invalid JSON, a big integer, or a proxy still held: `loads` decides.
            return None
