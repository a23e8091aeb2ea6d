"""Fault-injection soak: many concurrent waits through a faulty service, nothing lost.

Sync waits (the sensor's poke loop, one thread each) and deferrable waits (triggers
sharing one event loop) follow resource IDs whose life cycle the emulator scripts
(``success-N``, ``failed-N``, ``timeout-N``, ``filefail-N``, ``slowfile-N``, ``unknown-N``)
while a share of the status requests get an injected fault: 5xx JSON/HTML/empty,
429 with ``Retry-After``, connection resets, answers slower than the read timeout,
bodies cut short. Every wait must end with the outcome its ID says (no false
success, no false failure, no hang), with a bounded number of requests.

``tests/test_soak.py`` runs a small soak in the test suite; this script runs a larger
one and writes ``bench/soak-results.md``::

    python -m bench.soak [--waits 2000] [--fault-rate 0.3] [--seed 7]
    python bench/soak.py --waits 400
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "soak-results.md"

#: (convention kind, wait_for_file, expected outcome) of the waits, drawn in turn.
SCENARIOS: tuple[tuple[str, bool, str], ...] = (
    ("success", False, "success"),
    ("success", True, "success"),
    ("failed", False, "failed"),
    ("timeout", False, "failed"),
    ("filefail", True, "failed"),
    ("filefail", False, "success"),  # SUCCESS with file_status FAILED: done unless waiting for the file
    ("slowfile", True, "success"),
    ("slowfile", False, "success"),
    ("unknown", False, "success"),
)


@dataclass(frozen=True)
class SoakConfig:
    """Size and fault plan of a soak; the retry settings are the connections' extras."""

    sync_waits: int = 150
    deferred_waits: int = 150
    fault_rate: float = 0.3
    seed: int = 7
    threads: int = 16
    max_steps: int = 4
    poll_interval: float = 0.02
    read_timeout: float = 0.4
    slow_seconds: float = 0.7
    retry_after: float = 0.05
    max_retries: int = 4
    backoff_factor: float = 0.02
    retry_max_wait: float = 0.2
    max_consecutive_errors: int = 3
    #: A wait still going after this many seconds counts as a hang.
    wait_limit: float = 90.0


@dataclass
class WaitResult:
    """How one wait ended, and what the emulator saw of it."""

    side: str  # "sync" or "deferrable"
    resource_id: str
    wait_for_file: bool
    expected: str
    outcome: str = "hang"
    detail: str = ""
    steps: int = 0  # answered polls needed to reach the final verdict
    polls: int | None = None  # sync waits only (the trigger's polls are not visible from outside)
    requests: int = 0
    faulted: int = 0
    exhausted_polls: int = 0  # polls whose every attempt got a fault (tolerated by the wait)
    seconds: float = 0.0


@dataclass
class SoakReport:
    config: SoakConfig
    results: list[WaitResult]
    faults: Counter[str]
    status_requests: int
    seconds: float
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        per_wait = [r.requests for r in self.results]
        outcomes = Counter((r.side, r.expected, r.outcome) for r in self.results)
        return {
            "waits": len(self.results),
            "sync_waits": sum(r.side == "sync" for r in self.results),
            "deferrable_waits": sum(r.side == "deferrable" for r in self.results),
            "status_requests": self.status_requests,
            "faults": dict(sorted(self.faults.items())),
            "faults_total": sum(self.faults.values()),
            "requests_per_wait": {
                "min": min(per_wait, default=0),
                "median": statistics.median(per_wait) if per_wait else 0,
                "max": max(per_wait, default=0),
            },
            "exhausted_polls": sum(r.exhausted_polls for r in self.results),
            "outcomes": {f"{side}/{expected}->{got}": n for (side, expected, got), n in sorted(outcomes.items())},
            "wrong_outcomes": sum(r.outcome != r.expected for r in self.results),
            "seconds": round(self.seconds, 1),
            "problems": len(self.problems),
        }


def steps_needed(kind: str, count: int, wait_for_file: bool) -> int:
    """Answered status polls until a waiter decides (see the emulator's conventions)."""
    if kind == "slowfile" and not wait_for_file:
        return 1  # SUCCESS from the first answer
    return count + 1


def plan_waits(config: SoakConfig) -> list[WaitResult]:
    rng = random.Random(config.seed)
    waits: list[WaitResult] = []
    for side, total in (("sync", config.sync_waits), ("deferrable", config.deferred_waits)):
        for index in range(total):
            kind, wait_for_file, expected = SCENARIOS[index % len(SCENARIOS)]
            count = rng.randint(0, config.max_steps)
            rid = f"{kind}-{count}-soak{config.seed}-{side[0]}{index}"
            waits.append(WaitResult(side, rid, wait_for_file, expected, steps=steps_needed(kind, count, wait_for_file)))
    return waits


@contextlib.contextmanager
def _connections(url: str, config: SoakConfig) -> Iterator[tuple[str, str]]:
    """Two connections to the emulator: token auth (sync waits) and AK/SK (deferrable waits)."""
    from airflow_provider_dataqc.testing.emulator import (
        DEFAULT_AKSK,
        DEFAULT_PROJECT_ID,
        DEFAULT_TOKEN,
        DEFAULT_WORKSPACE,
    )

    extra = {
        "project_id": DEFAULT_PROJECT_ID,
        "workspace": DEFAULT_WORKSPACE,
        "timeout": config.read_timeout,
        "connect_timeout": 5,
        "max_retries": config.max_retries,
        "backoff_factor": config.backoff_factor,
        "retry_max_wait": config.retry_max_wait,
        "retry_timeout": 60,
        # The soak measures outcomes under faults, not the flow-control budget (benchmarked apart).
        "rate_limit": 0,
    }
    conns = {
        "dataqc_soak_sync": {"conn_type": "dataqc", "host": url, "password": DEFAULT_TOKEN, "extra": extra},
        "dataqc_soak_deferrable": {
            "conn_type": "dataqc",
            "host": url,
            "login": DEFAULT_AKSK[0],
            "password": DEFAULT_AKSK[1],
            "extra": {**extra, "auth_type": "aksk"},
        },
    }
    saved = {name: os.environ.get(f"AIRFLOW_CONN_{name.upper()}") for name in conns}
    for name, conn in conns.items():
        os.environ[f"AIRFLOW_CONN_{name.upper()}"] = json.dumps(conn)
    try:
        yield "dataqc_soak_sync", "dataqc_soak_deferrable"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(f"AIRFLOW_CONN_{name.upper()}", None)
            else:
                os.environ[f"AIRFLOW_CONN_{name.upper()}"] = value


def _sync_wait(sensor: Any, wait: WaitResult, config: SoakConfig, stop: threading.Event) -> None:
    """The sensor's poke loop (poke mode), as BaseSensorOperator runs it."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_dataqc.hooks.dataqc import DataQCApiError

    started = time.monotonic()
    wait.polls = 0
    try:
        while not stop.is_set() and time.monotonic() - started < config.wait_limit:
            wait.polls += 1
            result = sensor.poke({})
            if result:
                record = getattr(result, "xcom_value", None) or {}
                wait.outcome, wait.detail = "success", str(record.get("status"))
                return
            time.sleep(config.poll_interval)
        wait.outcome, wait.detail = "hang", f"still waiting after {wait.polls} polls"
    except AirflowFailException as err:
        wait.outcome, wait.detail = "failed", str(err)[:200]
    except DataQCApiError as err:
        wait.outcome, wait.detail = "error", str(err)[:300]
    except Exception as err:  # anything else is a bug the soak must show
        wait.outcome, wait.detail = "crash", f"{type(err).__name__}: {err}"[:300]
    finally:
        wait.seconds = time.monotonic() - started


async def _deferred_wait(trigger: Any, wait: WaitResult, config: SoakConfig) -> None:
    started = time.monotonic()

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        return {"status": "no event"}

    try:
        payload = await asyncio.wait_for(first_event(), config.wait_limit)
        wait.outcome = str(payload.get("status"))
        wait.detail = str(payload.get("message"))[:300]
    except asyncio.TimeoutError:
        wait.outcome, wait.detail = "hang", f"no event within {config.wait_limit:g}s"
    except Exception as err:
        wait.outcome, wait.detail = "crash", f"{type(err).__name__}: {err}"[:300]
    finally:
        wait.seconds = time.monotonic() - started


def run_soak(config: SoakConfig) -> SoakReport:
    """Run one soak against an emulator of its own; Airflow must already be importable."""
    from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor
    from airflow_provider_dataqc.testing.emulator import FAULT_KINDS, Emulator, FaultPlan
    from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

    waits = plan_waits(config)
    plan = FaultPlan(
        rate=config.fault_rate,
        mix=dict.fromkeys(FAULT_KINDS, 1.0),
        seed=config.seed,
        operations=("status",),
        slow_seconds=config.slow_seconds,
        retry_after=config.retry_after,
    )
    with Emulator(faults=plan, max_recorded=10_000_000) as emu, _connections(emu.url, config) as conns:
        sync_conn, async_conn = conns
        sync_waits = [w for w in waits if w.side == "sync"]
        deferred = [w for w in waits if w.side == "deferrable"]
        sensors = [
            DataQCResourceStatusSensor(
                task_id=f"soak_{index}",
                resource_id=w.resource_id,
                dataqc_conn_id=sync_conn,
                wait_for_file=w.wait_for_file,
                max_consecutive_errors=config.max_consecutive_errors,
                poke_interval=config.poll_interval,
            )
            for index, w in enumerate(sync_waits)
        ]
        triggers = [
            DataQCResourceStatusTrigger(
                w.resource_id,
                dataqc_conn_id=async_conn,
                poll_interval=config.poll_interval,
                wait_for_file=w.wait_for_file,
                max_consecutive_errors=config.max_consecutive_errors,
            )
            for w in deferred
        ]
        stop = threading.Event()
        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="soak-sync")
        try:
            futures = [pool.submit(_sync_wait, s, w, config, stop) for s, w in zip(sensors, sync_waits, strict=True)]

            async def all_deferred() -> None:
                await asyncio.gather(*(_deferred_wait(t, w, config) for t, w in zip(triggers, deferred, strict=True)))

            asyncio.run(all_deferred())
            limit = time.monotonic() + config.wait_limit * max(1, len(sync_waits) // max(config.threads, 1) + 1)
            for future in futures:
                try:
                    future.result(timeout=max(limit - time.monotonic(), 0.1))
                except FutureTimeout:
                    break
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        elapsed = time.monotonic() - started
        time.sleep(config.slow_seconds + 0.2)  # a slow answer is recorded when it is finally sent
        _attach_requests(emu, waits, config)
        report = SoakReport(config, waits, Counter(emu.faults_injected), emu.count("status"), elapsed)
    report.problems = check(report)
    return report


def _attach_requests(emu: Any, waits: list[WaitResult], config: SoakConfig) -> None:
    """Requests, faults and polls that ran out of retries, per wait, from the emulator's records."""
    by_id: dict[str, list[Any]] = {}
    for record in emu.requests:
        if record.operation == "status" and record.resource_id is not None:
            by_id.setdefault(record.resource_id, []).append(record)
    attempts = config.max_retries + 1
    for wait in waits:
        records = sorted(by_id.get(wait.resource_id, []), key=lambda r: r.request_id)  # arrival order
        wait.requests = len(records)
        wait.faulted = sum(1 for r in records if r.fault)
        run = 0
        for record in [*records, None]:
            if record is not None and record.fault:
                run += 1
                continue
            wait.exhausted_polls += run // attempts
            run = 0


def check(report: SoakReport) -> list[str]:
    """Everything that went wrong: a wrong outcome, a hang, or more requests than the retry bounds allow."""
    config = report.config
    attempts = config.max_retries + 1
    problems: list[str] = []
    for wait in report.results:
        where = f"{wait.side} wait on {wait.resource_id!r}"
        if wait.outcome != wait.expected:
            problems.append(f"{where}: expected {wait.expected}, got {wait.outcome} ({wait.detail})")
            continue
        answered = wait.requests - wait.faulted
        if answered < wait.steps:
            problems.append(f"{where}: decided after {answered} answers, {wait.steps} are needed")
        # Each answered poll follows at most max_consecutive_errors - 1 failed polls; a poll is
        # at most max_retries + 1 requests.
        bound = attempts * config.max_consecutive_errors * max(answered, 1)
        if wait.requests > bound:
            problems.append(f"{where}: {wait.requests} requests, more than the retry bounds allow ({bound})")
        if wait.polls is not None and not wait.polls <= wait.requests <= wait.polls * attempts:
            problems.append(f"{where}: {wait.requests} requests for {wait.polls} polls of at most {attempts}")
    return problems


def render(report: SoakReport) -> str:
    figures = report.figures()
    config = report.config
    per_wait = figures["requests_per_wait"]
    lines = [
        "# Fault-injection soak",
        "",
        f"Written by `python -m bench.soak` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')} "
        f"({platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs).",
        "",
        f"{figures['waits']} waits ran at once: {figures['sync_waits']} sync (the sensor's poke loop, "
        f"{config.threads} threads, token auth) and {figures['deferrable_waits']} deferrable "
        "(triggers on one event loop, AK/SK auth), against the local emulator with "
        f"{config.fault_rate:.0%} of status requests faulted (seed {config.seed}).",
        "",
        "| setting | value |",
        "|---|---|",
        f"| read timeout / slow answer | {config.read_timeout:g} s / {config.slow_seconds:g} s |",
        f"| max_retries, backoff_factor, retry_max_wait | {config.max_retries}, {config.backoff_factor:g} s, "
        f"{config.retry_max_wait:g} s |",
        f"| Retry-After on 429 | {config.retry_after:g} s |",
        f"| max_consecutive_errors | {config.max_consecutive_errors} |",
        f"| poll interval | {config.poll_interval:g} s |",
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
        f"| waits | {figures['waits']} |",
        f"| wall time | {figures['seconds']} s |",
        f"| status requests | {figures['status_requests']} |",
        f"| faults injected | {figures['faults_total']} "
        f"({figures['faults_total'] / max(figures['status_requests'], 1):.1%} of status requests) |",
        f"| requests per wait (min / median / max) | {per_wait['min']} / {per_wait['median']:g} / {per_wait['max']} |",
        f"| polls that ran out of retries (tolerated by the wait) | {figures['exhausted_polls']} |",
        f"| wrong outcomes (false success, false failure, hang) | {figures['wrong_outcomes']} |",
        f"| retry-bound violations and other problems | {figures['problems']} |",
        "",
        "### Faults injected, per kind",
        "",
        "| kind | count |",
        "|---|---|",
        *[f"| {kind} | {count} |" for kind, count in figures["faults"].items()],
        "",
        "### Outcomes (side / expected -> got)",
        "",
        "| side / expected -> got | waits |",
        "|---|---|",
        *[f"| {name} | {count} |" for name, count in figures["outcomes"].items()],
        "",
    ]
    if report.problems:
        lines += ["## Problems", "", *[f"- {problem}" for problem in report.problems[:50]], ""]
    return "\n".join(lines)


def _quiet_logs() -> None:
    """Thousands of waits log tens of thousands of lines: keep only errors of the soak itself."""
    import logging

    for name in ("airflow", "airflow.task", "airflow.triggers", "airflow_provider_dataqc", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with contextlib.suppress(Exception):
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=2000, help="total waits, half sync and half deferrable")
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=32, help="threads running the sync waits")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    home = tempfile.mkdtemp(prefix="dataqc-soak-airflow-")
    os.environ.setdefault("AIRFLOW_HOME", home)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db")
    sys.path.insert(0, str(REPO))
    import airflow  # noqa: F401  (configures logging first, so the soak can quiet it)

    _quiet_logs()
    config = SoakConfig(
        sync_waits=args.waits // 2,
        deferred_waits=args.waits - args.waits // 2,
        fault_rate=args.fault_rate,
        seed=args.seed,
        threads=args.threads,
    )
    report = run_soak(config)
    text = render(report)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.output}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
