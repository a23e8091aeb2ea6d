"""Does the trigger's first-poll delay keep a deferral clear of Airflow 3's scheduler race?

Starts the deployment of the real-deployment suite (tests/e2e/deployment.py: PostgreSQL,
Airflow's own processes, LocalExecutor) with ``[workers] min_heartbeat_interval`` at
``--heartbeat`` seconds (Airflow's default, 5, unless told), and runs the ``dataqc_race``
DAG (scripts/race_dags): ``--count`` deferrable sensors polling every second whose
trigger fires at its first poll. For each first-poll delay (``--variants``; ``provider``
is the provider's own choice) it runs ``--rounds`` DAG runs, one at a time, and counts the
sensors that ended wrongly (anything but success at the first try) and the scheduler's
race lines (``... finished with state success, but the task instance's state attribute
is ...``). Prints a Markdown table. Run it with the e2e virtualenv's Python.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from deployment import AIRFLOW_MAJOR, RACE_TEXT, Deployment  # noqa: E402

DAG_FILE = REPO / "scripts" / "race_dags" / "dataqc_race.py"
ENDED = ("success", "failed", "upstream_failed", "skipped", "removed")


def race_lines(dep: Deployment, run_id: str) -> int:
    hits = 0
    for log in dep.logs.glob("scheduler*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if RACE_TEXT.search(line) and "dataqc_race" in line and run_id in line:
                hits += 1
    return hits


def one_run(dep: Deployment, count: int, first_poll: str) -> dict[str, float]:
    run_id = dep.trigger_api("dataqc_race", {"count": count, "first_poll": first_poll})
    deadline = time.monotonic() + 900
    while True:
        rows = dep.query(
            "SELECT state, try_number, extract(epoch FROM end_date - start_date) FROM task_instance"
            " WHERE dag_id = 'dataqc_race' AND run_id = %s AND task_id = 'wait'",
            run_id,
        )
        ended = [r for r in rows if r[0] in ENDED]
        run_state = dep.query("SELECT state FROM dag_run WHERE dag_id = 'dataqc_race' AND run_id = %s", run_id)
        if len(ended) >= count or (run_state and run_state[0][0] in ("success", "failed")):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{run_id}: only {len(ended)} of {count} sensors ended in 900 s")
        time.sleep(3)
    time.sleep(5)  # the scheduler writes its last lines
    wrong = [r for r in rows if r[0] != "success" or r[1] != 1]
    durations = [float(r[2]) for r in rows if r[2] is not None]
    return {
        "tasks": len(rows),
        "wrong": len(wrong),
        "race": race_lines(dep, run_id),
        "duration": statistics.median(durations) if durations else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--variants", default="jitter,provider")
    args = parser.parse_args()
    if AIRFLOW_MAJOR < 3:
        raise SystemExit("the race is Airflow 3's (its task supervisor); run this with Airflow 3")
    variants = args.variants.split(",")
    dep = Deployment(
        REPO / ".airflow-e2e" / "race",
        environment={"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(args.heartbeat)},
    )
    dep.start((DAG_FILE,))
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    try:
        deadline = time.monotonic() + 240
        while not dep.query("SELECT dag_id FROM serialized_dag WHERE dag_id = 'dataqc_race'"):
            if time.monotonic() > deadline:
                raise SystemExit("dataqc_race was never parsed")
            time.sleep(2)
        for round_ in range(args.rounds):
            for variant in variants:  # interleaved: the machine's noise falls on every variant alike
                result = one_run(dep, args.count, variant)
                results[variant].append(result)
                print(f"round {round_ + 1}, first poll {variant}: {result}", flush=True)
    finally:
        dep.stop()
    airflow = __import__("airflow").__version__
    print(
        f"\nAirflow {airflow}, LocalExecutor, PostgreSQL; min_heartbeat_interval {args.heartbeat:g} s;"
        f" {args.rounds} runs of {args.count} deferrable sensors (1 s polls) per first-poll delay\n"
    )
    print("| first poll after the deferral | sensors | ended wrongly | scheduler race lines | median task time (s) |")
    print("|---|---|---|---|---|")
    for variant, runs in results.items():
        label = {"provider": "the provider's (at least 1.2x the heartbeat)", "jitter": "0.5-1.0 s (no floor)"}.get(
            variant, f"{variant} s"
        )
        tasks = sum(int(r["tasks"]) for r in runs)
        wrong = sum(int(r["wrong"]) for r in runs)
        race = sum(int(r["race"]) for r in runs)
        duration = statistics.median(r["duration"] for r in runs)
        print(f"| {label} | {tasks} | {wrong} | {race} | {duration:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
