"""What the normaliser makes of one input document."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from streams.signals import Signal


class RejectReason(StrEnum):
    """Why a message went to the dead-letter topic. Values are a contract:
    they are the `kbwatch-reason` header and the `reason` metric label."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    NOT_WINLOGBEAT = "not_winlogbeat"
    UNKNOWN_FORMAT = "unknown_format"
    BAD_EVENT_ID = "bad_event_id"
    BAD_DEVICE = "bad_device"
    BAD_TIMESTAMP = "bad_timestamp"
    MISSING_FIELD = "missing_field"
    BAD_VALUE = "bad_value"


@dataclass(frozen=True, slots=True)
class Rejected:
    """The message cannot be used; `detail` says which field and why."""

    reason: RejectReason
    detail: str


# Not frozen, for the same reason as `streams.signals.Signal`; never changed once built.
@dataclass(slots=True)
class Seen:
    """A record no rule reads, but it tells how far the device's event time got.

    The timestamp stays text so that the sieve can throttle these by a prefix
    comparison before paying for a parse.
    """

    device: str
    host: str
    stamp: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A record with nothing for the rules and no device time to take from it."""

    why: str


Outcome = Signal | Seen | Ignored | Rejected
