"""Alert delivery bookkeeping: what Alertmanager must hear, and when."""

from typing import Any

from streams.delivery import FIRING_HORIZON_MS, RESOLVED_REPEAT_MS, AlertBook
from streams.timeutil import to_rfc3339

NOW = 1_800_000_000_000


def alert(
    status: str, fingerprint: str = "0123456789abcdef", ends: str = "0001-01-01T00:00:00Z"
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "PostUpdateBootLoop",
            "severity": "critical",
            "kb": "KB5055523",
            "device": "d1",
        },
        "annotations": {"summary": "s", "description": "d", "runbook_url": "https://example.invalid/r"},
        "startsAt": "2025-04-08T14:24:02.000Z",
        "endsAt": ends,
        "fingerprint": fingerprint,
    }


def test_firing_alerts_are_sent_with_ends_at_four_minutes_ahead_and_a_generator_url():
    book = AlertBook("http://grafana.example/d/kbwatch-fleet/kbwatch-fleet")
    book.update(alert("firing"), NOW)
    (posted,) = book.payload(NOW)
    assert posted["endsAt"] == to_rfc3339(NOW + FIRING_HORIZON_MS)
    assert posted["startsAt"] == "2025-04-08T14:24:02.000Z"
    assert posted["labels"]["alertname"] == "PostUpdateBootLoop"
    assert posted["generatorURL"] == "http://grafana.example/d/kbwatch-fleet/kbwatch-fleet?var-kb=KB5055523"
    assert book.counts() == (1, 0)


def test_a_resolution_is_repeated_for_five_minutes_then_forgotten():
    book = AlertBook("http://g")
    book.update(alert("firing"), NOW)
    book.update(alert("resolved", ends="2025-04-08T20:24:02.000Z"), NOW + 1000)
    (posted,) = book.payload(NOW + RESOLVED_REPEAT_MS)
    assert posted["endsAt"] == "2025-04-08T20:24:02.000Z"
    assert book.payload(NOW + 1000 + RESOLVED_REPEAT_MS + 1) == []
    assert book.counts() == (0, 0)


def test_rebuilding_from_the_topic_keeps_what_still_fires():
    """A restart replays the alerts topic: the last message of each fingerprint wins."""
    book = AlertBook("http://g")
    old = NOW - 24 * 3_600_000
    book.update(alert("firing", "aaaaaaaaaaaaaaaa"), old)
    book.update(alert("resolved", "aaaaaaaaaaaaaaaa", ends="2025-04-08T20:24:02.000Z"), old + 1000)
    book.update(alert("firing", "bbbbbbbbbbbbbbbb"), old + 2000)
    posted = book.payload(NOW)
    assert [p["endsAt"] for p in posted] == [to_rfc3339(NOW + FIRING_HORIZON_MS)]
