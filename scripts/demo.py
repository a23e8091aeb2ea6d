"""`make demo`: run the example DAGs with `airflow dags test` against the local emulator.

Everything stays inside the repository's ignored `.demo/` folder: Airflow's home,
its SQLite database, the downloaded files. The emulator runs on 127.0.0.1 for the
duration of the demo and is stopped at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"
AIRFLOW_HOME = DEMO / "airflow"
#: The ``airflow`` command of the virtualenv running this script (not whatever is on PATH).
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass(frozen=True)
class Run:
    dag_id: str
    conf: dict[str, str]
    expect_success: bool
    must_log: str = ""
    what: str = ""


RUNS = [
    Run("example_dataqc_sensor", {"resource_id": "success-2"}, True, what="sensor, poke and deferrable"),
    Run("example_dataqc_hook", {"resource_id": "success-0"}, True, what="hook in a @task"),
    Run("example_dataqc_promote", {}, True, what="export, wait, download, import into ws-prod, wait"),
    Run(
        "example_dataqc_sensor",
        {"resource_id": "failed-1"},
        False,
        must_log="references a missing data connection",
        what="a failing export: fails once, error_msg in the log",
    ),
    Run("example_dataqc_quality_gate", {"job_id": "1440764172232392705"}, True, what="a passing quality gate"),
    Run(
        "example_dataqc_quality_gate",
        {"job_id": "1440764172232392706"},
        False,
        must_log="Data quality failed: 2 of 3 rules alarmed",
        what="an alarming quality gate: fails once, the alarmed rules' table in the log",
    ),
]


def start_emulator(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        # Flow control stays on (the CLI's default: 40 requests per 10 s per user, 429 without
        # Retry-After past it), so every run below shows the client keeping within it.
        [sys.executable, "-m", "airflow_provider_dataqc.testing.emulator", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            break
    process.kill()
    raise SystemExit("the emulator did not start")


def main() -> int:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
    AIRFLOW_HOME.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(AIRFLOW_HOME),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
            "DATAQC_DEMO_DIR": str(DEMO / "files"),
            "PYTHONPATH": str(REPO),
        }
    )
    emulator, url = start_emulator(env)
    print(f"emulator: {url}", flush=True)
    env["AIRFLOW_CONN_DATAQC_DEFAULT"] = json.dumps(
        {
            "conn_type": "dataqc",
            "host": url,
            "password": "emulator-token",
            "extra": {"project_id": "0123456789abcdef0123456789abcdef", "workspace": "ws-dev"},
        }
    )
    results: list[tuple[Run, bool, float]] = []
    try:
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, text=True)
        for run in RUNS:
            started = time.monotonic()
            done = subprocess.run(
                [AIRFLOW, "dags", "test", run.dag_id, "--conf", json.dumps(run.conf)],
                env=env,
                capture_output=True,
                text=True,
            )
            output = done.stdout + done.stderr
            log_file = DEMO / f"{run.dag_id}-{run.conf.get('resource_id') or run.conf.get('job_id', 'run')}.log"
            log_file.write_text(output)
            failed = re.search(r"state=failed|DagRunState\.FAILED|'failed'", output) is not None or done.returncode
            if run.expect_success:
                ok = not failed
            else:  # failed, with the service's error_msg in the log, and no retry although retries=2
                ok = bool(failed) and run.must_log in output and "up_for_retry" not in output.lower()
            results.append((run, ok, time.monotonic() - started))
            verdict = "OK  " if ok else "FAIL"
            expected = "succeeded" if run.expect_success else "failed as expected"
            print(
                f"{verdict} {run.dag_id} {json.dumps(run.conf)}: {expected if ok else 'see ' + str(log_file)}"
                f" ({time.monotonic() - started:.1f}s) - {run.what}",
                flush=True,
            )
            if not ok:
                print(output[-4000:])
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()
        if emulator.stdout is not None:  # the emulator's last words: requests served and 429s answered
            for line in emulator.stdout.read().splitlines():
                if "429" in line:
                    print(f"emulator: {line.strip()}", flush=True)
    passed = sum(ok for _, ok, _ in results)
    print(f"demo: {passed} of {len(RUNS)} runs as expected; logs in {DEMO.relative_to(REPO)}/")
    return 0 if passed == len(RUNS) else 1


if __name__ == "__main__":
    sys.exit(main())
