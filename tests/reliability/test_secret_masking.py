"""Secrets (password, issued tokens) never reach an error or a retry log line."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_dataqc.hooks.dataqc import DataQCApiError
from airflow_provider_dataqc.testing.emulator import DEFAULT_USER, Emulator, FaultPlan

from .support import MODES, fetch_status, unique


@pytest.mark.parametrize("mode", MODES)
def test_secrets_stay_out_of_errors_and_retry_logs(
    fresh_emulator: Emulator, use_connection: Any, task_logs: Any, mode: str
) -> None:
    use_connection(fresh_emulator, "password", max_retries=2)
    fresh_emulator.faults = FaultPlan(rate=1.0, mix={"http500_json": 1.0, "http502_html": 1.0}, seed=3)
    with pytest.raises(DataQCApiError) as caught:
        fetch_status(mode, unique("success-1"))
    text = task_logs.text() + str(caught.value) + repr(caught.value)
    assert fresh_emulator.issued_tokens and "retrying in" in text
    for secret in (DEFAULT_USER[1], *fresh_emulator.issued_tokens):
        assert secret not in text
