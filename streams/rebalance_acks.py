"""Faust must not commit past a message its agent never saw.

faust-streaming (0.15.3 measured) hands an agent's stream every message the
consumer fetched. A message that reaches the stream while a rebalance has
suspended the flow, or that was fetched in an earlier generation of the group,
is skipped, and then acked like a message a filter dropped. Acked, its offset
is committed with the next commit, and when the worker keeps the partition the
stream resumes after it: the message is never processed by anyone. The chaos
test lost boot-loop records, app crashes and `seen` signals of partitions the
surviving worker kept, this way (read off the topics of a failed run).

So the consumer refuses to ack such a message. Faust tracks a message once its
agent has it (`Message.tracked`); a message not tracked, acked while the flow is
suspended or from an old generation, is one of those skips. Unacked, it keeps
its partition's commit where it was, and the seek to the committed offsets
after the rebalance reads it again.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

log = logging.getLogger(__name__)

_GUARDED = "_kbwatch_rebalance_skips_guarded"


def guard_rebalance_skips(app: faust.App) -> None:
    """Make `app`'s consumer refuse to ack messages skipped for a rebalance (idempotent)."""
    consumer = app.consumer
    if getattr(consumer, _GUARDED, False):
        return
    ack = consumer.ack

    def ack_unless_skipped(message: Any) -> bool:
        if skipped_for_rebalance(app, message):
            return False
        return bool(ack(message))

    consumer.ack = ack_unless_skipped  # type: ignore[method-assign]  # this consumer only
    setattr(consumer, _GUARDED, True)


def skipped_for_rebalance(app: faust.App, message: Any) -> bool:
    """Whether `message` reached no agent because a rebalance was under way when it came."""
    if getattr(message, "tracked", True):
        return False  # an agent had it: processed, or dropped on purpose
    stale = getattr(message, "generation_id", app.consumer_generation_id) != app.consumer_generation_id
    return stale or not app.flow_control.is_active()
