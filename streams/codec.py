"""The one place that turns bytes into Python values and back (orjson)."""

from __future__ import annotations

from typing import Any

import orjson

DecodeError = orjson.JSONDecodeError


def loads(payload: bytes | str) -> Any:
    """Parse JSON; raises `DecodeError` on anything that is not strict JSON."""
    return orjson.loads(payload)


def dumps(value: Any) -> bytes:
    """Compact JSON with sorted keys, so equal values give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def dumps_line(value: Any) -> bytes:
    """One JSON line (NDJSON) for files and stdout."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
