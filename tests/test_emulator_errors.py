"""The emulator's "does not exist" answer: 404 by default, or 400 / 500 as DQC pages document."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from airflow_provider_dataqc.testing.emulator import DEFAULT_PROJECT_ID, DEFAULT_TOKEN, Emulator, running_emulator

BASE = f"/v2/{DEFAULT_PROJECT_ID}/quality/resource"
HEADERS = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "ws-dev"}


def _calls(emulator: Emulator) -> list[requests.Response]:
    url = emulator.url + BASE
    return [
        requests.get(f"{url}/status/nobody-made-this", headers=HEADERS, timeout=10),
        requests.get(f"{url}/download", params={"resource_id": "nobody-made-this"}, headers=HEADERS, timeout=10),
        requests.post(
            f"{url}/import",
            json={"resource_id": "nobody-made-this", "type": "rule-template"},
            headers=HEADERS,
            timeout=10,
        ),
    ]


@pytest.mark.parametrize("http_status", [404, 400, 500])
def test_not_found_is_dqc_1016_at_the_chosen_status(http_status: int) -> None:
    with running_emulator(not_found_status=http_status) as emulator:
        for answer in _calls(emulator):
            assert answer.status_code == http_status
            assert answer.headers["Content-Type"].startswith("application/json")
            assert answer.json() == {"error_code": "DQC.1016", "error_msg": "The resource does not exist"}
            assert answer.headers["X-Request-Id"]


def test_default_is_404_and_gateway_answers_keep_their_codes() -> None:
    with running_emulator(not_found_status=500) as emulator:
        assert emulator.not_found_status == 500
        # A route the gateway does not know stays a gateway 404, bad credentials stay 401.
        unknown = requests.get(f"{emulator.url}{BASE}/nothing-here", headers=HEADERS, timeout=10)
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "APIGW.0101"
        bad = requests.get(f"{emulator.url}{BASE}/status/x", headers={**HEADERS, "X-Auth-Token": "nope"}, timeout=10)
        assert bad.status_code == 401 and bad.json()["error_code"].startswith("APIGW.03")
        emulator.not_found_status = 404  # changeable at runtime
        assert _calls(emulator)[0].status_code == 404
    with running_emulator() as emulator:
        assert emulator.not_found_status == 404 and _calls(emulator)[0].status_code == 404
    with pytest.raises(ValueError, match="not_found_status"):
        Emulator(not_found_status=418)


def test_command_line_not_found_status() -> None:
    module = "airflow_provider_dataqc.testing.emulator"
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", "--not-found-status", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        answer = requests.get(f"{url}{BASE}/status/nobody-made-this", headers=HEADERS, timeout=10)
        assert answer.status_code == 500 and answer.json()["error_code"] == "DQC.1016"
    finally:
        process.terminate()
        process.wait(timeout=10)
    refused = subprocess.run(
        [sys.executable, "-m", module, "--not-found-status", "418"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2 and "--not-found-status" in refused.stderr
