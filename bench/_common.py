"""Shared plumbing of the benchmarks: emulator processes, connections, Airflow home, statistics.

No Airflow import here: the orchestrator (``python -m bench``) stays light and runs each
section in a fresh subprocess of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
OUT = BENCH / "out"

# Credentials the emulator accepts (kept here so the orchestrator needs no package import).
EMU_MODULE = "airflow_provider_dataqc.testing.emulator"
_FLOW_FLAGS = ("--no-flow-control", "--flow-window", "--flow-per-api", "--flow-per-user", "--flow-limit")


def emulator_defaults() -> dict[str, Any]:
    from airflow_provider_dataqc.testing import emulator as emu

    return {
        "token": emu.DEFAULT_TOKEN,
        "user": emu.DEFAULT_USER,
        "aksk": emu.DEFAULT_AKSK,
        "project_id": emu.DEFAULT_PROJECT_ID,
        "workspace": emu.DEFAULT_WORKSPACE,
    }


# --------------------------------------------------------------------------- statistics
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and min-max of repeated measurements."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": median(values), "min": float(min(values)), "max": float(max(values)), "n": len(values)}


# --------------------------------------------------------------------------- environment
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a section subprocess: a throw-away Airflow home, the repo importable."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW_CONN_") and not key.startswith("AIRFLOW__")
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(extra)
    return env


def ensure_airflow_home() -> Path:
    """Inside a section subprocess: make sure the Airflow home exists (``AIRFLOW_HOME`` set by the parent)."""
    home = Path(os.environ.get("AIRFLOW_HOME") or tempfile.mkdtemp(prefix="dataqc-bench-airflow-"))
    (home / "dags").mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    return home


def connection_json(url: str, auth_type: str = "token", **extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` value for the emulator at ``url``."""
    d = emulator_defaults()
    conn: dict[str, Any] = {"conn_type": "dataqc", "host": url}
    settings: dict[str, Any] = {"project_id": d["project_id"], "workspace": d["workspace"], "auth_type": auth_type}
    # Cost and scale are measured without the flow-control budget (its own benchmark turns it on).
    settings["rate_limit"] = 0
    if auth_type == "token":
        conn["password"] = d["token"]
    elif auth_type == "password":
        conn["login"], conn["password"], settings["domain_name"] = d["user"]
        settings["iam_endpoint"] = url
    elif auth_type == "aksk":
        conn["login"], conn["password"] = d["aksk"]
    settings.update(extra)
    conn["extra"] = settings
    return json.dumps(conn)


def use_connection(conn_id: str, url: str, auth_type: str = "token", **extra: Any) -> str:
    """Set ``AIRFLOW_CONN_<ID>`` in this process, as a deployment would."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = connection_json(url, auth_type, **extra)
    return conn_id


# --------------------------------------------------------------------------- emulator processes
class EmulatorProcess:
    """``python -m airflow_provider_dataqc.testing.emulator --port N`` in a separate process."""

    def __init__(self, *args: str, log: Path | None = None) -> None:
        self.port = free_port()
        self.args = list(args)
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def _flow_args(self) -> list[str]:
        return [] if any(arg.split("=")[0] in _FLOW_FLAGS for arg in self.args) else ["--no-flow-control"]

    def start(self) -> EmulatorProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        if self.log is None:
            OUT.mkdir(parents=True, exist_ok=True)
            self.log = OUT / f"emulator-{self.port}.log"
        # Output goes to a file, never to a pipe that nobody reads (a full pipe would stall the server).
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                # The CLI throttles as the service does; cost and scale are measured without it
                # (the flow-control benchmark passes its own limits).
                [sys.executable, "-m", EMU_MODULE, "--port", str(self.port), *self._flow_args(), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(REPO),
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        assert self.proc is not None and self.log is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the emulator exited: {self.log.read_text()[-500:]!r}")
            if "listening" in self.log.read_text():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the emulator did not start within 20 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def emulators(count: int, *args: str) -> Iterator[list[EmulatorProcess]]:
    started: list[EmulatorProcess] = []
    try:
        for _ in range(count):
            started.append(EmulatorProcess(*args).start())
        yield started
    finally:
        for emu in started:
            emu.stop()


# --------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mhz = ""
    with contextlib.suppress(OSError):
        found = re.search(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
        mhz = f"{float(found.group(1)):.0f} MHz" if found else ""
    mem = ""
    with contextlib.suppress(OSError):
        found = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
        mem = f"{int(found.group(1)) / 1024 / 1024:.1f} GiB" if found else ""
    versions: dict[str, str] = {}
    code = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        "for d in ('apache-airflow', 'apache-airflow-providers-http', 'aiohttp', 'requests', 'matplotlib', 'psutil'):\n"
        "    try: out[d] = m.version(d)\n"
        "    except Exception: out[d] = 'not installed'\n"
        "print(json.dumps(out))\n"
    )
    with contextlib.suppress(Exception):
        versions = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "cpu_mhz": mhz,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "versions": versions,
        "loadavg_at_start": load,
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
