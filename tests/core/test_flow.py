"""The per-user flow-control budget: spacing, 429 adaptation, recovery, and whose budget a call uses."""

from __future__ import annotations

import pytest

from airflow_provider_dataqc.core.flow import (
    HEADROOM,
    MIN_CALLS_PER_WINDOW,
    WINDOW_SECONDS,
    Budget,
    FlowControl,
    flow_key,
)
from airflow_provider_dataqc.core.settings import AuthType, ConnectionSettings


def test_calls_are_spaced_evenly_in_the_order_they_ask() -> None:
    budget = Budget(limit=40)
    interval = WINDOW_SECONDS / (40 * HEADROOM)
    waits = [budget.reserve(now=100.0) for _ in range(5)]
    assert waits == pytest.approx([0, interval, 2 * interval, 3 * interval, 4 * interval])
    # In any 10 s window no more than the documented 40 go out.
    starts = [100.0 + w for w in waits] + [100.0 + budget.reserve(100.0) for _ in range(60)]
    assert max(sum(1 for t in starts if s <= t < s + WINDOW_SECONDS) for s in starts) <= 40
    assert budget.reserve(now=1000.0) == 0.0  # an idle budget does not bank a burst


def test_a_429_halves_the_rate_and_pauses_and_answers_win_it_back() -> None:
    budget = Budget(limit=40)
    full = budget.rate
    budget.on_throttled(now=10.0, retry_after=None)
    assert budget.rate == full / 2 and budget.throttled == 1
    assert budget.reserve(now=10.0) == pytest.approx(2 * WINDOW_SECONDS / budget.rate)
    budget.on_throttled(now=10.0, retry_after=7.0)
    assert budget.paused_until >= 17.0
    for _ in range(100):
        budget.on_throttled(now=10.0, retry_after=None)
    assert budget.rate == MIN_CALLS_PER_WINDOW  # never stops altogether
    answers = 0
    while budget.rate < full:
        budget.on_answer()
        answers += 1
    assert budget.rate == full and 15 <= answers <= 25  # gradually, not at once


def test_budgets_are_per_key_and_off_at_zero() -> None:
    flow = FlowControl()
    assert flow.reserve(("a",), 40, 0.0) == 0.0 and flow.reserve(("a",), 40, 0.0) > 0
    assert flow.reserve(("b",), 40, 0.0) == 0.0  # another user has a budget of its own
    assert [flow.reserve(("c",), 0, 0.0) for _ in range(10)] == [0.0] * 10
    flow.record(("a",), 40, 0.0, throttled=True, retry_after=None)
    snapshot = flow.snapshot(("a",))
    assert snapshot is not None and snapshot.throttled == 1 and flow.snapshot(("c",)) is None


def settings(**kwargs: object) -> ConnectionSettings:
    values: dict[str, object] = {"endpoint": "https://dayu.example", "project_id": "p", "auth_type": AuthType.TOKEN}
    values.update(kwargs)
    return ConnectionSettings(**values)  # type: ignore[arg-type]


def test_the_key_names_the_identity_never_the_secret() -> None:
    token = settings(secret="tok-secret-value-123")
    key = flow_key(token)
    assert "tok-secret-value-123" not in repr(key) and key[:2] == ("https://dayu.example", "p")
    assert flow_key(settings(secret="another-token")) != key
    aksk = flow_key(settings(auth_type=AuthType.AKSK, login="AK1", secret="SK-one"))
    assert aksk == flow_key(settings(auth_type=AuthType.AKSK, login="AK1", secret="SK-two"))  # one user
    assert "SK-one" not in repr(aksk)
