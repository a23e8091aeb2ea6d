"""Waits within DataArts Quality's flow control: many waits of one user against a gateway that
throttles, the documented 500 "not found" in a connection test, and the budget in the call plan."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest
from conftest import set_connection

from airflow_provider_dataqc.core.flow import FLOW, flow_key
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor
from airflow_provider_dataqc.testing.emulator import Emulator, FlowControl
from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

# The documented 40 calls per 10 s per user, scaled ten times faster so the test stays short:
# the gateway allows 40 per second, the client's budget is 400 per 10 s.
GATEWAY = {"per_api": 3000, "per_user": 40, "window": 1.0}
BUDGET = 400


@pytest.fixture
def throttling_emulator() -> Any:
    with Emulator(flow_control=FlowControl(**GATEWAY)) as emu:  # type: ignore[arg-type]
        yield emu


@pytest.fixture(autouse=True)
def _fresh_budgets() -> Any:
    FLOW.clear()
    yield
    FLOW.clear()


def test_200_deferred_waits_and_20_poking_sensors_of_one_user_end_as_scripted(
    throttling_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(throttling_emulator, rate_limit=BUDGET, max_retries=3, backoff_factor=0.05)
    run = uuid.uuid4().hex[:6]
    deferred = {f"{('success', 'failed')[i % 2]}-2-{run}-d{i}": ("success", "failed")[i % 2] for i in range(200)}
    poked = {f"{('success', 'failed')[i % 2]}-2-{run}-p{i}": ("success", "failed")[i % 2] for i in range(20)}
    outcomes: dict[str, str] = {}

    def poke_until_done(rid: str) -> None:
        sensor = DataQCResourceStatusSensor(task_id=f"wait-{rid}", resource_id=rid, poke_interval=0.2)
        try:
            while not sensor.poke({}):
                time.sleep(0.2)
            outcomes[rid] = "success"
        except Exception as err:
            outcomes[rid] = "failed" if type(err).__name__ == "AirflowFailException" else f"error: {err}"

    async def trigger_events() -> dict[str, str]:
        async def one(rid: str) -> tuple[str, str]:
            async for event in DataQCResourceStatusTrigger(rid, poll_interval=0.5, max_consecutive_errors=3).run():
                return rid, str(event.payload["status"])
            raise AssertionError("no event")

        return dict(await asyncio.gather(*(one(rid) for rid in deferred)))

    threads = [threading.Thread(target=poke_until_done, args=(rid,)) for rid in poked]
    for thread in threads:
        thread.start()
    events = asyncio.run(asyncio.wait_for(trigger_events(), timeout=240))
    for thread in threads:
        thread.join(timeout=240)
    assert events == deferred  # every deferred wait ended as scripted: none in "error"
    assert outcomes == poked
    stats = throttling_emulator.flow_stats()
    # The budget keeps the user under the gateway's limit: 429s are a small share of the traffic.
    assert stats.served >= 3 * len(deferred | poked) and stats.throttled_share < 0.05, stats


def test_a_throttled_wait_is_ended_only_by_its_deadline_and_says_so(
    throttling_emulator: Emulator, use_connection: Any
) -> None:
    use_connection(throttling_emulator, rate_limit=0, max_retries=0)
    throttling_emulator.flow_control = FlowControl(per_api=3000, per_user=1, window=60.0)
    hook = DataQCHook()
    hook.get_resource_status(f"success-50-{uuid.uuid4().hex[:6]}")  # uses the user's one call a minute
    rid = f"success-1-{uuid.uuid4().hex[:6]}"
    trigger = DataQCResourceStatusTrigger(rid, poll_interval=0.05, max_consecutive_errors=2, end_time=time.time() + 1.5)

    async def first() -> Any:
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first())
    assert event["status"] == "timeout", event  # not "error", though far more than 2 polls failed
    assert "throttled by DataArts Quality's flow control" in event["message"]
    assert throttling_emulator.flow_stats().throttled >= 5


def test_a_429_slows_the_process_budget_for_that_user_only(throttling_emulator: Emulator, use_connection: Any) -> None:
    use_connection(throttling_emulator, rate_limit=BUDGET, max_retries=0)
    throttling_emulator.flow_control = FlowControl(per_api=3000, per_user=1, window=30.0)
    hook = DataQCHook()
    hook.get_resource_status(f"success-50-{uuid.uuid4().hex[:6]}")
    with pytest.raises(Exception, match="HTTP 429"):
        hook.get_resource_status(f"success-50-{uuid.uuid4().hex[:6]}")
    budget = FLOW.snapshot(flow_key(hook.settings))
    assert budget is not None and budget.throttled == 1 and budget.rate < BUDGET * 0.9


@pytest.mark.parametrize("status", [404, 400, 500])
def test_the_connection_test_accepts_a_service_error_in_each_documented_form(
    use_connection: Any, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    with Emulator(not_found_status=status) as emu:
        use_connection(emu)
        ok, message = DataQCHook().test_connection()
        assert ok, message
        assert f"HTTP {status} DQC." in message
        assert emu.count("status") == 1  # one call, a 500 not retried
        set_connection(monkeypatch, emu, "dataqc_default", "token", password="not-the-token")
        bad, refused = DataQCHook().test_connection()
        assert not bad and "Credentials rejected" in refused and "not-the-token" not in refused
