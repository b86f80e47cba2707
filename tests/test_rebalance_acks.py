"""A message Faust's stream skipped for a rebalance is not acked, so not committed past.

Real Faust objects (the app, its consumer, its messages); no broker is needed
because acking only books offsets in the consumer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlQueue

from streams.app import create_app
from streams.rebalance_acks import guard_rebalance_skips
from streams.settings import Settings

TOPIC = "kbwatch-signals"
PARTITION = TP(TOPIC, 0)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[object]:
    app = create_app(Settings(data_dir=str(tmp_path)))
    app.topics.acking_topics.add(TOPIC)  # as subscribing an agent to it does
    app.consumer_generation_id = 7
    app.flow_control.resume()  # as a started worker's is, outside rebalances
    guard_rebalance_skips(app)
    yield app


def message(offset: int, generation_id: int = 7, tracked: bool = False) -> ConsumerMessage:
    made = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, None, None, b"{}", None, generation_id=generation_id)
    made.tracked = tracked  # the stream sets it when it hands the message to its agent
    made.incref()
    return made


def acked(app: object) -> list[int]:
    return list(app.consumer._acked[PARTITION])  # type: ignore[attr-defined]


def test_a_message_the_agent_had_is_acked(app):
    assert message(5, tracked=True).ack(app.consumer)
    assert acked(app) == [5]


def test_a_message_skipped_while_the_flow_is_suspended_is_not_acked(app):
    app.flow_control.suspend()
    assert not message(5).ack(app.consumer)
    app.flow_control.resume()
    assert acked(app) == []


def test_a_message_of_an_earlier_generation_is_not_acked(app):
    assert not message(5, generation_id=6).ack(app.consumer)
    assert acked(app) == []


def test_a_message_no_agent_had_outside_a_rebalance_is_acked_as_before(app):
    """A message whose key or value could not be decoded is acked by Faust so; still is."""
    assert message(5).ack(app.consumer)
    assert acked(app) == [5]


def test_guarding_twice_wraps_once(app):
    guard_rebalance_skips(app)
    app.flow_control.suspend()
    assert not message(5).ack(app.consumer)
    app.flow_control.resume()
    assert message(6, tracked=True).ack(app.consumer)
    assert acked(app) == [6]


def queue_of(app: Any) -> FlowControlQueue[str]:
    # As an agent's channel makes its queue: cleared when the flow resumes.
    return FlowControlQueue(maxsize=10, flow_control=app.flow_control, clear_on_resume=True)


def test_resuming_a_flow_that_runs_keeps_what_the_agents_have_queued(app):
    """The recovery resumes the flow again after seeking: messages fetched since must stay."""
    queue = queue_of(app)
    queue.put_nowait("signal 443")
    app.flow_control.resume()
    assert queue.qsize() == 1


def test_resuming_after_a_suspension_still_clears_the_old_assignments_messages(app):
    queue = queue_of(app)
    queue.put_nowait("signal of a revoked partition")
    app.flow_control.suspend()
    app.flow_control.resume()
    assert queue.qsize() == 0
    assert app.flow_control.is_active()
