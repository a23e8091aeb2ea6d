"""The retry policy of ``core.calls``, driven with a fake clock: full-jitter backoff, ``Retry-After``,
which failures are retried and which are transient, and the bounds in number and total time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.calls import (
    Answer,
    Exclusive,
    NoAnswer,
    Send,
    Sleep,
    call,
    is_retryable,
    is_transient,
    retry_wait,
)
from airflow_provider_dataqc.core.errors import CallFailure, parse_retry_after
from airflow_provider_dataqc.core.settings import AuthType, ConnectionSettings, RetrySettings

PROJECT = "0123456789abcdef0123456789abcdef"
LOG = logging.getLogger("airflow_provider_dataqc.tests.calls")


def policy_settings(**retry: Any) -> ConnectionSettings:
    return ConnectionSettings(
        endpoint="https://dayu.example.com",
        project_id=PROJECT,
        auth_type=AuthType.TOKEN,
        workspace="ws-dev",
        secret="t",
        retry=RetrySettings(**retry),
    )


def drive(plan: Any, replies: Callable[[Send], Any], clock: list[float]) -> tuple[Any, list[Any]]:
    """Run a call plan with a fake clock: ``(outcome, actions)``."""
    actions: list[Any] = []
    reply: Any = None
    try:
        while True:
            action = plan.send(reply)
            actions.append(action)
            if isinstance(action, Send):
                reply = replies(action)
            elif isinstance(action, Sleep):
                clock[0] += action.seconds
                reply = None
            else:
                raise AssertionError(f"unexpected {action!r}")
    except StopIteration as done:
        return done.value, actions


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetrySettings(max_retries=10, backoff_factor=0.5, max_wait=3.0, total_timeout=1000)
    failure = CallFailure(operation="status", status_code=503)
    bounds: list[tuple[float, float]] = []

    def rng(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    waits = [
        retry_wait(failure, idempotent=True, retries_done=n, policy=policy, remaining=1000, rng=rng) for n in range(6)
    ]
    assert bounds == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0), (0.0, 3.0), (0.0, 3.0), (0.0, 3.0)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    jittered = [retry_wait(failure, idempotent=True, retries_done=3, policy=policy, remaining=1000) for _ in range(200)]
    assert all(w is not None and 0.0 <= w <= 3.0 for w in jittered)
    assert len({round(w or 0, 6) for w in jittered}) > 150  # full jitter: spread, not a fixed step


def test_retry_after_seconds_and_http_date_are_honoured_and_capped() -> None:
    now = time.time()
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.25 ") == 0.25
    assert parse_retry_after("-5") == 0.0
    when = format_datetime(datetime.fromtimestamp(now + 30, tz=UTC), usegmt=True)
    assert parse_retry_after(when, now=now) == pytest.approx(30, abs=1)
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=UTC), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    for junk in ("", "soon", "nan", "inf", "Tue, 99 Foo 2024"):
        assert parse_retry_after(junk) is None, junk
    policy = RetrySettings(max_retries=3, backoff_factor=1.0, max_wait=5.0, total_timeout=100)
    throttled = CallFailure(operation="status", status_code=429, retry_after=3600.0, not_processed=True)
    assert retry_wait(throttled, idempotent=False, retries_done=0, policy=policy, remaining=100) == 5.0
    soon = CallFailure(operation="status", status_code=503, retry_after=1.5)
    assert retry_wait(soon, idempotent=True, retries_done=0, policy=policy, remaining=100) == 1.5
    # A wait that would end after the total time budget is not started.
    assert retry_wait(soon, idempotent=True, retries_done=0, policy=policy, remaining=1.0) is None


@pytest.mark.parametrize(
    ("failure", "idempotent", "retried", "transient"),
    [
        (CallFailure("s", transport_error="connection refused", not_processed=True), False, True, True),
        (CallFailure("s", transport_error="read timeout"), True, True, True),
        (CallFailure("s", transport_error="read timeout"), False, False, True),
        (CallFailure("s", transport_error="reset"), False, False, True),
        (CallFailure("s", transport_error="TLS", permanent=True, not_processed=True), True, False, False),
        (CallFailure("s", status_code=429, not_processed=True), False, True, True),
        (CallFailure("s", status_code=500), True, True, True),
        (CallFailure("s", status_code=500), False, False, True),
        (CallFailure("s", status_code=502), True, True, True),
        (CallFailure("s", status_code=503), True, True, True),
        (CallFailure("s", status_code=504), True, True, True),
        (CallFailure("s", status_code=501), True, False, False),
        (CallFailure("s", status_code=400), True, False, False),
        (CallFailure("s", status_code=401), True, False, False),
        (CallFailure("s", status_code=403), True, False, False),
        (CallFailure("s", status_code=404), True, False, False),
        (CallFailure("s", status_code=302), True, False, False),
        (CallFailure("s", status_code=200, problem="the body is not JSON"), True, False, True),
    ],
)
def test_which_failures_are_retried_and_which_are_transient(
    failure: CallFailure, idempotent: bool, retried: bool, transient: bool
) -> None:
    assert is_retryable(failure, idempotent) is retried
    assert is_transient(failure) is transient


def test_retries_stop_at_max_retries_and_within_the_total_time() -> None:
    clock = [0.0]
    request = api.status_request(PROJECT, "ws-dev", "r-1")
    busy = Answer(503, {"X-Request-Id": "q"}, b'{"error_code":"DQC.0503","error_msg":"busy"}')

    settings = policy_settings(max_retries=4, backoff_factor=1.0, max_wait=60, total_timeout=1000)
    outcome, actions = drive(
        call(settings, request, log=LOG, clock=lambda: clock[0], rng=lambda a, b: b), lambda _: busy, clock
    )
    assert isinstance(outcome, CallFailure) and outcome.status_code == 503 and outcome.error_msg == "busy"
    assert sum(isinstance(a, Send) for a in actions) == 5  # one call and max_retries=4 retries
    assert [a.seconds for a in actions if isinstance(a, Sleep)] == [1.0, 2.0, 4.0, 8.0]

    clock[0] = 0.0
    settings = policy_settings(max_retries=20, backoff_factor=1.0, max_wait=60, total_timeout=10)
    outcome, actions = drive(
        call(settings, request, log=LOG, clock=lambda: clock[0], rng=lambda a, b: b), lambda _: busy, clock
    )
    sleeps = [a.seconds for a in actions if isinstance(a, Sleep)]
    assert sleeps == [1.0, 2.0, 4.0]  # the next wait (8 s) would end past the 10 s budget
    assert clock[0] <= 10 and sum(isinstance(a, Send) for a in actions) == 4
    assert not any(isinstance(a, Exclusive) for a in actions)  # no token fetch

    clock[0] = 0.0
    refused = NoAnswer("connection refused", maybe_processed=False)
    export = api.export_request(PROJECT, "ws-dev", "quality-task", resources=[1])
    settings = policy_settings(max_retries=2, backoff_factor=0.0, max_wait=60, total_timeout=100)
    outcome, actions = drive(call(settings, export, log=LOG, clock=lambda: clock[0]), lambda _: refused, clock)
    assert sum(isinstance(a, Send) for a in actions) == 3 and outcome.transport_error == "connection refused"
