"""Fault-injection soak: a few hundred concurrent waits through 30 % injected faults lose nothing.

Sync waits run the sensor's poke loop in threads; deferrable waits run triggers on one
event loop. The engine is ``bench/soak.py`` (``python -m bench.soak`` runs a larger soak).
"""

from __future__ import annotations

import statistics

from airflow_provider_dataqc.testing.emulator import FAULT_KINDS
from bench.soak import SCENARIOS, SoakConfig, run_soak


def test_concurrent_waits_through_injected_faults_end_as_their_scripts_say() -> None:
    config = SoakConfig(sync_waits=150, deferred_waits=150, fault_rate=0.3, seed=11, threads=16, wait_limit=45)
    report = run_soak(config)
    results = report.results
    assert len(results) == 300

    # Every wait ended, with the outcome its resource ID scripts: no false success, no false failure, no hang.
    wrong = [(r.side, r.resource_id, r.expected, r.outcome, r.detail) for r in results if r.outcome != r.expected]
    assert wrong == []
    assert {r.outcome for r in results} == {"success", "failed"}
    assert {(r.side, r.expected) for r in results} == {
        (side, expected) for side in ("sync", "deferrable") for _, _, expected in SCENARIOS
    }

    # The faults were really there: every kind, about 30 % of the status requests.
    assert set(report.faults) == set(FAULT_KINDS)
    share = sum(report.faults.values()) / report.status_requests
    assert 0.2 <= share <= 0.4, share
    assert sum(r.faulted for r in results) == sum(report.faults.values())

    # Requests per wait stay within the retry bounds.
    attempts = config.max_retries + 1
    for r in results:
        answered = r.requests - r.faulted
        assert answered >= r.steps, r  # decided only on an answer that says so
        assert r.requests <= attempts * config.max_consecutive_errors * answered, r
        if r.polls is not None:  # sync waits: each poll is one call of at most max_retries + 1 attempts
            assert r.polls <= r.requests <= r.polls * attempts, r
    assert report.problems == []
    assert statistics.median(r.requests for r in results) <= 3 * config.max_steps
    assert report.seconds < 60
