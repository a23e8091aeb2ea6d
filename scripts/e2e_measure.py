"""The real triggerer's cost: CPU per poll and memory per deferred wait, and where the time goes.

Starts the deployment of the real-deployment suite (tests/e2e/deployment.py: PostgreSQL,
Airflow's own processes with LocalExecutor) with the emulator in this process, so that
its request counts give the number of polls. It triggers ``dataqc_e2e_many`` with
``--sensors`` deferrable sensors polling every 5 s (60 polls each, so they stay deferred),
waits until all of them are deferred, then over ``--seconds``: the CPU time of the
triggerer's processes (psutil) against the status requests the emulator answered, the
RSS per deferred wait (against the triggerer's RSS before any trigger), and a py-spy
profile of the process that runs the triggers. Prints a Markdown section. Run it with
the e2e virtualenv's Python (py-spy installed there), as root for py-spy.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from deployment import AIRFLOW_MAJOR, Deployment  # noqa: E402


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def runner(pid: int) -> psutil.Process:
    """The process that runs the triggers: Airflow 3 runs them in a child of ``airflow triggerer``."""
    family = tree(pid)
    python = [p for p in family[1:] if "python" in (p.name() or "") or "airflow" in " ".join(p.cmdline())]
    return python[-1] if AIRFLOW_MAJOR >= 3 and python else family[0]


def classify(stack: str) -> str:
    if "airflow_provider_dataqc" in stack:
        return "provider (airflow_provider_dataqc)"
    if "aiohttp" in stack or "yarl" in stack or "multidict" in stack:
        return "aiohttp outside the provider's frames"
    if "/airflow/" in stack or "/airflow\\" in stack:
        return "Airflow (triggerer loop, logging, supervisor comms, DB)"
    if "structlog" in stack or "logging" in stack:
        return "logging"
    if "asyncio" in stack or "selectors" in stack:
        return "asyncio event loop"
    return "other"


def profile(pid: int, seconds: int, out: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    subprocess.run(
        [
            py_spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ],
        check=True,
        capture_output=True,
    )
    categories: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        categories[classify(stack)] += n
        frames = stack.split(";")
        provider = [f for f in frames if "airflow_provider_dataqc" in f]
        leaves[(provider[-1] if provider else frames[-1]).split(" (")[0] + (" [provider]" if provider else "")] += n
    return categories, leaves, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    dep = Deployment(REPO / ".airflow-e2e" / f"measure-af{AIRFLOW_MAJOR}", emulator_in_process=True)
    dep.start()
    try:
        deadline = time.monotonic() + 240
        while {"dataqc_e2e_many"} - {r[0] for r in dep.query("SELECT dag_id FROM serialized_dag")}:
            if time.monotonic() > deadline:
                raise SystemExit("the DAG was never parsed")
            time.sleep(2)
        triggerer = dep.services["triggerer"].process.pid
        time.sleep(10)
        idle_rss = runner(triggerer).memory_info().rss
        run_id = dep.trigger_api("dataqc_e2e_many", {"count": args.sensors, "steps": 60})
        deadline = time.monotonic() + 600
        while True:
            rows = dep.query(
                "SELECT count(*) FROM task_instance WHERE run_id = %s AND task_id = 'wait' AND state = 'deferred'",
                run_id,
            )
            if rows[0][0] >= args.sensors:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {rows[0][0]} of {args.sensors} sensors deferred")
            time.sleep(2)
        time.sleep(15)  # every trigger started and past its first poll
        family, trigger_process = tree(triggerer), runner(triggerer)
        polls0, cpu0, runner0 = dep.emulator.count("status"), cpu_seconds(family), cpu_seconds([trigger_process])
        time.sleep(args.seconds)
        polls, cpu, runner_cpu = (
            dep.emulator.count("status") - polls0,
            cpu_seconds(family) - cpu0,
            cpu_seconds([trigger_process]) - runner0,
        )
        rss = trigger_process.memory_info().rss
        categories, leaves, samples = profile(trigger_process.pid, 30, dep.root / "py-spy.txt")
    finally:
        dep.stop()
    airflow = __import__("airflow").__version__
    print(f"\n### Real triggerer, Airflow {airflow}: {args.sensors} deferred sensors polling every 5 s\n")
    print(f"- polls answered in {args.seconds} s: {polls} ({polls / args.seconds:.1f}/s)")
    print(f"- CPU per poll, triggerer processes together: {cpu / polls * 1000:.2f} ms")
    print(f"- CPU per poll, the process running the triggers (pid {trigger_process.pid}): ")
    print(f"  {runner_cpu / polls * 1000:.2f} ms")
    print(f"- RSS per deferred wait: {(rss - idle_rss) / args.sensors / 1024:.1f} KiB")
    print(f"  ({idle_rss / 2**20:.0f} MiB with no trigger, {rss / 2**20:.0f} MiB with {args.sensors})")
    print(f"\npy-spy, 30 s at 100 Hz on the trigger process ({samples} non-idle samples):\n")
    print("| where | share of samples |\n|---|---|")
    for name, n in categories.most_common():
        print(f"| {name} | {n / samples:.0%} |")
    print("\nTop frames (innermost provider frame when the provider is on the stack):\n")
    print("| frame | share |\n|---|---|")
    for name, n in leaves.most_common(12):
        print(f"| `{name}` | {n / samples:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
