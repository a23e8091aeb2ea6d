"""DAG-parsing cost: import time, sensor construction, and proof that parsing makes no call.

Run: ``python -m bench.parsing --json out.json [--repeats R --tasks N --rounds K]``.

* Import: fresh interpreters (compiled bytecode cached, as in a deployment) time
  ``import airflow.sdk`` and then ``from airflow_provider_dataqc.sensors.dataqc import
  DataQCResourceStatusSensor`` (and, for comparison, ``HttpSensor``'s import) in the same process;
  ``python -X importtime`` attributes the added cost to modules.
* Construction: ``N`` sensors in a ``DAG`` vs ``N`` plain ``BaseSensorOperator`` subclasses (and
  ``HttpSensor``), interleaved in rounds, ratio per round.
* Proof: a DAG file with ``N`` sensors (poke and deferrable, templated IDs) parsed by a real
  ``DagBag`` while ``socket`` connects, name look-ups, ``BaseHook.get_connection``,
  ``Connection.get`` and ``DataQCHook.__init__`` are instrumented.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench._common import ensure_airflow_home, summary, write_json

IMPORTS = {
    "dataqc": "from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor",
    "http": "from airflow.providers.http.sensors.http import HttpSensor",
}
_MARK = "@@BENCH-MARK@@"


def _python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, env=os.environ.copy())


def import_times(repeats: int) -> dict[str, Any]:
    code = (
        "import time, json, sys\n"
        "t0 = time.perf_counter()\n"
        "import airflow.sdk\n"
        "t1 = time.perf_counter()\n"
        "{stmt}\n"
        "t2 = time.perf_counter()\n"
        "print(json.dumps({{'sdk': t1 - t0, 'added': t2 - t1, 'requests': 'requests' in sys.modules, "
        "'aiohttp': 'aiohttp' in sys.modules}}))\n"
    )
    _python("\n".join(IMPORTS.values()))  # compile and cache bytecode first (as a deployment has it)
    added: dict[str, list[float]] = {name: [] for name in IMPORTS}
    sdk: list[float] = []
    loads: dict[str, dict[str, bool]] = {}
    for _ in range(repeats):
        for name, stmt in IMPORTS.items():
            done = _python(code.format(stmt=stmt))
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            row = json.loads(done.stdout.strip().splitlines()[-1])
            added[name].append(row["added"] * 1e3)
            sdk.append(row["sdk"] * 1e3)
            loads[name] = {"requests": row["requests"], "aiohttp": row["aiohttp"]}
    return {
        "repeats": repeats,
        "import_airflow_sdk_ms": summary(sdk),
        "added_ms": {name: summary(values) for name, values in added.items()},
        "loads_after_import": loads,
    }


def import_attribution(runs: int, top: int = 12) -> dict[str, Any]:
    """``-X importtime`` of the sensor import after ``import airflow.sdk``: median self / cumulative us."""
    code = f"import airflow.sdk, sys\nsys.stderr.write('{_MARK}\\n')\n{IMPORTS['dataqc']}\n"
    per_module: dict[str, dict[str, list[int]]] = {}
    totals: list[int] = []
    line_re = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
    for _ in range(runs):
        err = _python(code, "-X", "importtime").stderr
        after = err.split(_MARK, 1)[1] if _MARK in err else ""
        total = 0
        for line in after.splitlines():
            found = line_re.match(line)
            if not found:
                continue
            own, cumulative, module = int(found[1]), int(found[2]), found[4]
            indent = max(len(found[3]) - 1, 0)
            entry = per_module.setdefault(module, {"self": [], "cumulative": [], "depth": [indent // 2]})
            entry["self"].append(own)
            entry["cumulative"].append(cumulative)
            if indent == 0:
                total += cumulative
        totals.append(total)
    rows = [
        {
            "module": module,
            "self_us": summary(values["self"])["median"],
            "cumulative_us": summary(values["cumulative"])["median"],
            "depth": values["depth"][0],
        }
        for module, values in per_module.items()
    ]
    rows.sort(key=lambda r: -r["self_us"])
    return {"runs": runs, "total_us": summary(totals), "top_by_self": rows[:top], "modules": len(rows)}


def construction(tasks: int, rounds: int) -> dict[str, Any]:
    from datetime import datetime

    from airflow.providers.http.sensors.http import HttpSensor
    from airflow.sdk import DAG, BaseSensorOperator

    from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

    class PlainSensor(BaseSensorOperator):
        template_fields = ("resource_id",)

        def __init__(self, *, resource_id: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.resource_id = resource_id

        def poke(self, context: Any) -> bool:
            return True

    def build(kind: str, index: int) -> float:
        start = time.perf_counter()
        with DAG(dag_id=f"construct_{kind}_{index}", schedule=None, start_date=datetime(2024, 1, 1)):
            if kind == "dataqc":
                for i in range(tasks):
                    DataQCResourceStatusSensor(task_id=f"t{i}", resource_id=f"{{{{ params.rid_{i} }}}}")
            elif kind == "plain":
                for i in range(tasks):
                    PlainSensor(task_id=f"t{i}", resource_id=f"{{{{ params.rid_{i} }}}}")
            else:
                for i in range(tasks):
                    HttpSensor(task_id=f"t{i}", endpoint=f"/status/{{{{ params.rid_{i} }}}}")
        return time.perf_counter() - start

    kinds = ["dataqc", "plain", "http"]
    for kind in kinds:
        build(kind, -1)  # warm up
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(rounds):
        for kind in kinds[r % 3 :] + kinds[: r % 3]:
            gc.collect()
            times[kind].append(build(kind, r) * 1e3)
    ratio = [a / b for a, b in zip(times["dataqc"], times["plain"], strict=True)]
    ratio_http = [a / b for a, b in zip(times["dataqc"], times["http"], strict=True)]
    return {
        "tasks": tasks,
        "rounds": rounds,
        "ms": {k: summary(v) for k, v in times.items()},
        "ratio_dataqc_over_plain": summary(ratio),
        "ratio_dataqc_over_http": summary(ratio_http),
    }


_DAG_FILE = """
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

with DAG(dag_id="bench_parse_many_sensors", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    for i in range({tasks}):
        DataQCResourceStatusSensor(
            task_id=f"wait_{{i}}",
            resource_id="{{{{ params.resource_id }}}}-" + str(i),
            dataqc_conn_id="dataqc_conn_" + str(i % 7),
            workspace="ws-dev" if i % 2 else None,
            deferrable=bool(i % 2),
            wait_for_file=bool(i % 3 == 0),
            poke_interval=30,
            timeout=3600,
        )
"""

_PROBE = """
import json, socket, sys, time
calls = {"socket.connect": [], "socket.connect_ex": [], "socket.create_connection": [], "socket.getaddrinfo": [],
         "BaseHook.get_connection": [], "Connection.get": [], "DataQCHook.__init__": []}

def wrap(owner, name, key, is_classmethod=False):
    original = getattr(owner, name)
    func = original.__func__ if is_classmethod else original
    def recorder(*args, **kwargs):
        calls[key].append(repr(args[1:] if is_classmethod or key.startswith("DataQCHook") else args)[:120])
        return func(*args, **kwargs)
    setattr(owner, name, classmethod(recorder) if is_classmethod else recorder)

wrap(socket.socket, "connect", "socket.connect")
wrap(socket.socket, "connect_ex", "socket.connect_ex")
wrap(socket, "create_connection", "socket.create_connection")
wrap(socket, "getaddrinfo", "socket.getaddrinfo")
from airflow.providers.common.compat.sdk import BaseHook
wrap(BaseHook, "get_connection", "BaseHook.get_connection", is_classmethod=True)
try:
    from airflow.sdk.definitions.connection import Connection
except ImportError:
    from airflow.models.connection import Connection
if hasattr(Connection, "get"):
    wrap(Connection, "get", "Connection.get", is_classmethod=True)
if hasattr(Connection, "get_connection_from_secrets"):
    wrap(Connection, "get_connection_from_secrets", "Connection.get", is_classmethod=True)
from airflow_provider_dataqc.hooks.dataqc import DataQCHook
wrap(DataQCHook, "__init__", "DataQCHook.__init__")
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
start = time.perf_counter()
kwargs = {"dag_folder": sys.argv[1]}
if "include_examples" in DagBag.__init__.__code__.co_varnames:
    kwargs["include_examples"] = False
bag = DagBag(**kwargs)
elapsed = time.perf_counter() - start
dag = bag.dags.get("bench_parse_many_sensors")
print(json.dumps({
    "parse_seconds": elapsed,
    "import_errors": {k: str(v)[-500:] for k, v in bag.import_errors.items()},
    "tasks": len(dag.tasks) if dag is not None else 0,
    "calls": {k: len(v) for k, v in calls.items()},
    "examples": {k: v[:3] for k, v in calls.items() if v},
}))
"""


def parse_proof(tasks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dataqc-bench-dags-") as folder:
        Path(folder, "bench_parse_many_sensors.py").write_text(textwrap.dedent(_DAG_FILE.format(tasks=tasks)))
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, folder], capture_output=True, text=True, env=os.environ.copy()
        )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["dag_tasks_written"] = tasks
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--importtime-runs", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    ensure_airflow_home()
    result = {
        "imports": import_times(args.repeats),
        "importtime": import_attribution(args.importtime_runs),
        "construction": construction(args.tasks, args.rounds),
        "parse_proof": parse_proof(args.tasks),
    }
    write_json(Path(args.json), result)
    print(json.dumps(result, indent=1)[:4000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
