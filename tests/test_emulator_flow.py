"""The emulator's flow control (per-API and per-user windows, 429 APIGW.0308), over real HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_dataqc.core import api
from airflow_provider_dataqc.core.auth import prepare
from airflow_provider_dataqc.core.settings import ConnectionSettings
from airflow_provider_dataqc.testing.emulator import (
    DEFAULT_AKSK,
    DEFAULT_PROJECT_ID,
    DEFAULT_TOKEN,
    DEFAULT_USER,
    Emulator,
    FaultPlan,
    running_emulator,
)
from airflow_provider_dataqc.testing.emulator.flow import FlowControl

P = DEFAULT_PROJECT_ID
BASE = f"/v2/{P}/quality/resource"
TOKEN = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-dev"}


class Clock:
    """A clock the test moves by hand: windows open and close without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limited(clock: Clock) -> Iterator[Emulator]:
    control = FlowControl(per_api=300, per_user=3, window=10.0, clock=clock)
    with running_emulator(flow_control=control) as emulator:
        yield emulator


def status(emulator: Emulator, resource_id: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(f"{emulator.url}{BASE}/status/{resource_id}", headers=headers or TOKEN, timeout=10)


def signed_status(emulator: Emulator, resource_id: str, auth: str = "aksk") -> requests.Response:
    login, password = DEFAULT_AKSK if auth == "aksk" else DEFAULT_USER[:2]
    settings = ConnectionSettings.from_connection(
        host=emulator.url,
        login=login,
        password=password,
        port=None,
        schema=None,
        extra={"auth_type": auth, "project_id": P, "workspace": "ws-dev", "domain_name": DEFAULT_USER[2]},
    )
    token = None
    if auth == "password":
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": login, "password": password, "domain": {"name": DEFAULT_USER[2]}}},
                },
                "scope": {"project": {"id": P}},
            }
        }
        issued = requests.post(f"{emulator.url}/v3/auth/tokens", json=body, timeout=10)
        assert issued.status_code == 201
        return status(emulator, resource_id, {"X-Auth-Token": issued.headers["X-Subject-Token"], "workspace": "ws-dev"})
    prepared = prepare(settings, api.status_request(P, "ws-dev", resource_id), token=token)
    return requests.request(prepared.method, prepared.url, headers=dict(prepared.headers), timeout=10)


def test_off_by_default_so_bursts_are_all_answered() -> None:
    with running_emulator() as emulator:
        answers = [status(emulator, "success-0").status_code for _ in range(60)]
        assert answers == [200] * 60
        stats = emulator.flow_stats()
        assert emulator.flow_control is None and stats.throttled == 0
        assert stats.served_by_api == {"status": 60} and stats.served == 60


def test_past_the_per_user_limit_a_429_in_the_documented_form_and_no_life_cycle_moves(
    limited: Emulator, clock: Clock
) -> None:
    codes = [status(limited, "success-5").status_code for _ in range(3)]
    refused = status(limited, "success-5")
    assert codes == [200, 200, 200]
    assert refused.status_code == 429 and "Retry-After" not in refused.headers
    assert refused.headers["X-Request-Id"]
    assert refused.json() == {
        "error_code": "APIGW.0308",
        "error_msg": "The throttling threshold has been reached: policy user over ratelimit,limit:3,time:10 second",
    }
    assert status(limited, "success-5").status_code == 429
    clock.now += 10.0  # the window slides past the three answered requests
    answer = status(limited, "success-5")
    assert answer.status_code == 200
    # Three answered polls moved it three steps (WAITING, RUNNING, RUNNING); the 429s moved nothing.
    assert answer.json()["status"] == "RUNNING"
    steps = [status(limited, "success-5").json()["status"] for _ in range(2)]
    assert steps == ["RUNNING", "SUCCESS"]
    stats = limited.flow_stats()
    assert stats.throttled == 2 == limited.throttled
    assert stats.throttled_by_api == {"status": 2}
    assert limited.count("status", resource_id="success-5") == 8
    assert [r.status for r in limited.requests].count(429) == 2


def test_each_credential_identity_has_its_own_budget(limited: Emulator) -> None:
    assert [status(limited, "success-0").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert [signed_status(limited, "success-0").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert [signed_status(limited, "success-0", "password").status_code for _ in range(4)] == [200, 200, 200, 429]
    stats = limited.flow_stats()
    assert set(stats.served_by_user) == {f"ak:{DEFAULT_AKSK[0]}", f"user:{DEFAULT_USER[0]}", *stats.served_by_user}
    assert len(stats.served_by_user) == 3 and set(stats.served_by_user.values()) == {3}
    assert set(stats.throttled_by_user.values()) == {1}
    for key in stats.served_by_user:  # identities name who called, never a secret
        assert DEFAULT_TOKEN not in key and DEFAULT_AKSK[1] not in key and DEFAULT_USER[1] not in key


def test_the_per_api_window_counts_everybody_and_says_policy_api(clock: Clock) -> None:
    control = FlowControl(per_api=4, per_user=40, clock=clock, retry_after=2)
    with running_emulator(flow_control=control) as emulator:
        first = [status(emulator, "success-0").status_code for _ in range(2)]
        second = [signed_status(emulator, "success-0").status_code for _ in range(2)]
        refused = signed_status(emulator, "success-0")
        assert first + second == [200] * 4
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
        assert refused.json()["error_msg"] == (
            "The throttling threshold has been reached: policy api over ratelimit,limit:4,time:10 second"
        )
        # Another API has its own window.
        download = requests.get(
            f"{emulator.url}{BASE}/download", params={"resource_id": "success-0"}, headers=TOKEN, timeout=10
        )
        assert download.status_code == 200


def test_documented_limits_export_is_1800_and_20() -> None:
    control = FlowControl()
    assert control.limits_for("export") == (1800, 20)
    assert control.limits_for("status") == (300, 40) == control.limits_for("download")
    assert control.window == 10.0 and control.retry_after is None
    with pytest.raises(ValueError, match="window"):
        FlowControl(window=0)
    with pytest.raises(ValueError, match=">= 1"):
        FlowControl(per_user=0)


def test_faulted_and_throttled_requests_are_apart_and_iam_is_not_throttled(clock: Clock) -> None:
    control = FlowControl(per_user=2, clock=clock)
    plan = FaultPlan(rate=1.0, mix={"http503": 1.0}, operations=("status",))
    with running_emulator(flow_control=control, faults=plan) as emulator:
        assert [status(emulator, "success-1").status_code for _ in range(4)] == [503] * 4
        emulator.faults = None
        assert [status(emulator, "success-1").json()["status"] for _ in range(2)] == ["WAITING", "SUCCESS"]
        assert status(emulator, "success-1").status_code == 429
        for _ in range(4):
            assert signed_status(emulator, "success-1", "password").status_code in (200, 429)
        assert emulator.flow_stats().throttled_by_api.get("iam") is None


def test_switching_it_on_and_off_at_runtime(clock: Clock) -> None:
    with running_emulator() as emulator:
        emulator.flow_control = FlowControl(per_user=1, clock=clock)
        assert [status(emulator, "success-0").status_code for _ in range(2)] == [200, 429]
        emulator.flow_control = None
        assert status(emulator, "success-0").status_code == 200
        emulator.reset_counts()
        assert emulator.throttled == 0 and emulator.flow_stats().served == 0
    with running_emulator(flow_control=True) as emulator:
        assert emulator.flow_control == FlowControl(clock=emulator.flow_control.clock)  # type: ignore[union-attr]


def _cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    module = "airflow_provider_dataqc.testing.emulator"
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.strip().rsplit(" ", 1)[-1]


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    assert process.stdout is not None
    out = process.stdout.read()  # through the same buffer as the first readline
    assert process.wait(timeout=10) == 0
    return out


def _burst(url: str, n: int) -> list[int]:
    return [requests.get(f"{url}{BASE}/status/success-0", headers=TOKEN, timeout=5).status_code for _ in range(n)]


@pytest.mark.parametrize(
    ("args", "expected", "summary"),
    [
        ((), [200] * 40 + [429], "answered 1 with 429"),
        (("--flow-per-user", "2", "--flow-retry-after", "1"), [200, 200, 429], "answered 1 with 429"),
        (("--no-flow-control",), [200] * 41, "answered 0 with 429"),
    ],
)
def test_command_line_has_flow_control_on_unless_told(args: Any, expected: list[int], summary: str) -> None:
    process, url = _cli(*args)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert _burst(url, len(expected)) == expected
    finally:
        out = _stop(process)
    assert summary in out
    assert ("flow control: 300/" in out) == ("--no-flow-control" not in args)


def test_command_line_refuses_bad_limits() -> None:
    module = "airflow_provider_dataqc.testing.emulator"
    done = subprocess.run(
        [sys.executable, "-m", module, "--flow-limit", "export=lots"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "OPERATION=API/USER" in done.stderr
