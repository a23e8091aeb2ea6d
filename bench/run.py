"""``python -m bench``: run every benchmark section, each in fresh subprocesses, then write the report.

``python -m bench`` (``make bench``) writes ``bench/results.md`` and ``bench/results.png``;
``python -m bench --smoke`` runs a tiny size of everything in well under a minute and writes to
``bench/out/smoke/`` (the committed results stay untouched). Raw figures, logs and profiles go
to ``bench/out/``. Benchmarks never fail on a figure: the exit status is non-zero only when a
section could not run at all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import BENCH, OUT, REPO, airflow_env, machine_info, read_json, write_json

SECTIONS = ("capacity", "poke", "parsing", "scale", "download", "flow")


def plan(smoke: bool) -> dict[str, Any]:
    """What each section runs; ``smoke`` is a tiny size of everything."""
    if smoke:
        return {
            "capacity": [["--seconds", "1", "--concurrency", "16"]],
            "poke": [["--rounds", "2", "--pokes", "10", "--count-pokes", "10", "--profile-pokes", "50"]],
            "parsing": [["--repeats", "1", "--importtime-runs", "1", "--tasks", "100", "--rounds", "2"]],
            "scale": [
                ["--n", "20", "--polls", "2", "--interval", "0.2", "--label", "dataqc N=20"],
                ["--n", "100", "--polls", "2", "--interval", "0.2", "--label", "dataqc N=100", "--profile", "{out}"],
                [
                    *["--n", "50", "--polls", "2", "--interval", "0.2", "--stagger", "0.2", "--tracemalloc"],
                    *["--label", "profile: memory held per wait (tracemalloc), N=50"],
                ],
                ["--n", "20", "--polls", "2", "--interval", "0.2", "--kind", "threads", "--label", "threads N=20"],
            ],
            "download": [["--size-mb", "2", "--variant", "dataqc"], ["--size-mb", "2", "--variant", "http"]],
            "flow": [["--n", "50", "--rate-limit", limit] for limit in ("40", "0")],
        }
    polls = "10"
    return {
        "capacity": [["--seconds", "5", "--concurrency", "16", "128"]],
        "poke": [["--rounds", "15", "--pokes", "100", "--count-pokes", "100", "--profile-pokes", "2000"]],
        "parsing": [["--repeats", "15", "--importtime-runs", "5", "--tasks", "1000", "--rounds", "9"]],
        "scale": [
            *[["--n", str(n), "--polls", polls, "--label", f"dataqc N={n}"] for n in (100, 1000, 5000, 10000)],
            *[
                ["--n", str(n), "--polls", polls, "--kind", "threads", "--label", f"threads N={n}"]
                for n in (1000, 5000)
            ],
            [
                "--n",
                "10000",
                "--polls",
                "3",
                "--interval",
                "10",
                "--stagger",
                "10",
                "--label",
                "dataqc N=10000, 10 s polls, starts spread over 10 s",
            ],
            [
                *["--n", "10000", "--polls", "3", "--interval", "10", "--stagger", "10"],
                *["--gc-freeze", "--gc-threshold0", "50000"],
                *["--label", "what-if: the same + gc.freeze() + gc.set_threshold(50000)"],
            ],
            ["--n", "1000", "--polls", "5", "--label", "profile: dataqc N=1000", "--profile", "{out}"],
            [
                *["--n", "2000", "--polls", "3", "--interval", "4", "--stagger", "4", "--tracemalloc"],
                *["--label", "profile: memory held per wait (tracemalloc), N=2000, 4 s polls"],
            ],
        ],
        "download": [
            ["--size-mb", "50", "--variant", "dataqc"],
            ["--size-mb", "500", "--variant", "dataqc"],
            ["--size-mb", "50", "--variant", "http"],
            ["--size-mb", "500", "--variant", "http"],
        ],
        "flow": [["--n", n, "--rate-limit", limit] for n in ("100", "1000") for limit in ("40", "0")],
    }


def _run_section(module: str, args: list[str], out: Path, index: int, env: dict[str, str]) -> dict[str, Any]:
    json_path = out / f"{module}-{index}.json"
    log_path = out / "logs" / f"{module}-{index}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [a.replace("{out}", str(out / "profiles" / f"{module}-{index}.prof")) for a in args]
    (out / "profiles").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", f"bench.{module}", *args, "--json", str(json_path)]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=str(REPO), env=env, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    _trim_log(log_path)
    if done.returncode != 0 or not json_path.exists():
        tail = log_path.read_text(errors="replace")[-1500:]
        print(f"   !! bench.{module} {' '.join(args)} failed (exit {done.returncode}); log: {log_path}\n{tail}")
        return {"error": f"exit {done.returncode}", "args": args, "seconds": elapsed}
    result = read_json(json_path)
    result["_seconds"] = elapsed
    result["_args"] = args
    return result


def _trim_log(path: Path, keep: int = 200_000) -> None:
    """Trigger and sensor runs log a line per poll: keep the head and tail of big logs."""
    size = path.stat().st_size
    if size <= 2 * keep:
        return
    with open(path, "rb") as f:
        head = f.read(keep)
        f.seek(size - keep)
        tail = f.read()
    path.write_bytes(head + f"\n... [{size - 2 * keep} bytes cut] ...\n".encode() + tail)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny size of everything (well under a minute)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--with-soak", action="store_true", help="also run bench/soak.py when it exists")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the last raw results")
    args = parser.parse_args(argv)

    from bench import report

    out = OUT / ("smoke" if args.smoke else "full")
    results_path = out / "results.json"
    md_path, png_path = (out / "results.md", out / "results.png") if args.smoke else report.DEFAULT_OUTPUTS
    if args.report_only:
        report.write(read_json(results_path), md_path, png_path)
        print(f"wrote {md_path} and {png_path}")
        return 0

    out.mkdir(parents=True, exist_ok=True)
    home = out / "airflow-home"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dags").mkdir(parents=True)
    env = airflow_env(home)
    # Compiled bytecode is cached (as in any deployment) but kept out of the source tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(OUT / "pycache")
    os.environ["PYTHONPYCACHEPREFIX"] = env["PYTHONPYCACHEPREFIX"]

    # One interpreter compiles what every section imports, so no section pays for compiling.
    warm = "import airflow.sdk, airflow_provider_dataqc.sensors.dataqc, airflow_provider_dataqc.triggers.dataqc\n"
    warm += "import airflow.providers.http.sensors.http, airflow_provider_dataqc.testing.emulator, bench.alternatives"
    subprocess.run([sys.executable, "-c", warm], cwd=str(REPO), env=env, capture_output=True)

    previous: dict[str, Any] = read_json(results_path) if results_path.exists() and args.only else {}
    results: dict[str, Any] = {
        "machine": machine_info(),
        "mode": "smoke" if args.smoke else "full",
        "sections": previous.get("sections", {}),
        "seconds": previous.get("seconds", {}),
        "loadavg": previous.get("loadavg", {}),
    }
    failed = False
    started = time.perf_counter()
    for section, runs in plan(args.smoke).items():
        if args.only and section not in args.only:
            continue
        print(f"== {section} (load average {_loadavg()})", flush=True)
        results["loadavg"][section] = _loadavg()
        section_started = time.perf_counter()
        outputs = []
        for index, run_args in enumerate(runs):
            result = _run_section(section, run_args, out, index, env)
            failed = failed or "error" in result
            outputs.append(result)
            print(f"   {section} {' '.join(run_args)}: {result.get('_seconds', 0):.1f}s", flush=True)
        results["sections"][section] = outputs if section in ("scale", "download", "flow") else outputs[0]
        results["seconds"][section] = time.perf_counter() - section_started
    if args.with_soak and (BENCH / "soak.py").exists():
        print("== soak (bench/soak.py)", flush=True)
        soak_started = time.perf_counter()
        soak_args = ["--waits", "200", "--output", str(out / "soak-results.md")] if args.smoke else []
        done = subprocess.run([sys.executable, "-m", "bench.soak", *soak_args], cwd=str(REPO), env=env)
        results["sections"]["soak"] = {"exit_status": done.returncode}
        results["seconds"]["soak"] = time.perf_counter() - soak_started
    results["total_seconds"] = sum(results["seconds"].values())
    results["last_run_seconds"] = time.perf_counter() - started
    write_json(results_path, results)
    report.write(results, md_path, png_path)
    print(f"wrote {md_path} and {png_path} in {results['total_seconds']:.0f}s (raw figures: {results_path})")
    return 1 if failed else 0
