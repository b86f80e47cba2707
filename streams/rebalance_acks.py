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

A second way: resuming Faust's flow control clears every agent's queue (mode's
`FlowControlEvent.resume`), which is right after a suspension, when the queues
hold messages of the old assignment. But the recovery resumes the flow to read
the changelogs, seeks the stream partitions to their committed offsets, lets
the agents work, and only then resumes the flow again: whatever had been
fetched from the committed offsets and still waited in a queue was dropped,
never processed and never acked, and the agent went on with the next fetch.
A chaos run lost a device's boot loop so (signals 443-455 of a partition just
taken over: 419-442 processed, then 456 on; its commit stayed at 443). So a
resume of a flow that is not suspended leaves the queues alone.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

log = logging.getLogger(__name__)

_GUARDED = "_kbwatch_rebalance_skips_guarded"


def guard_rebalance_skips(app: faust.App) -> None:
    """Make `app` keep the messages a rebalance would skip or drop (idempotent).

    Its consumer refuses to ack a message skipped for a rebalance, and its flow
    control clears the agents' queues only when it resumes from a suspension.
    """
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
    flow_control = app.flow_control
    resume = flow_control.resume

    def resume_unless_flowing() -> None:
        if flow_control.is_active():
            return  # not suspended: its queues hold the current assignment's messages
        resume()

    flow_control.resume = resume_unless_flowing  # type: ignore[method-assign]  # this app only


def skipped_for_rebalance(app: faust.App, message: Any) -> bool:
    """Whether `message` reached no agent because a rebalance was under way when it came."""
    if getattr(message, "tracked", True):
        return False  # an agent had it: processed, or dropped on purpose
    stale = getattr(message, "generation_id", app.consumer_generation_id) != app.consumer_generation_id
    return stale or not app.flow_control.is_active()
