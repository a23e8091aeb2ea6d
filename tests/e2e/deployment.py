"""A throw-away Airflow deployment on this machine, as users run one.

PostgreSQL (a cluster made with ``initdb``), the bundled emulator and Airflow's own
processes with LocalExecutor — Airflow 3: ``api-server``, ``scheduler``,
``dag-processor``, ``triggerer``; Airflow 2: ``webserver``, ``scheduler``,
``triggerer`` — all on loopback ports chosen free at start. Everything lives in one
ignored folder; :meth:`Deployment.stop` ends every process it started, by PID, with
its process group and whatever children it left, also after a failed start.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]
E2E_DAGS = Path(__file__).resolve().parent / "dags"
EXAMPLE_DAGS = REPO / "example_dags"
BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")
AIRFLOW_MAJOR = int(__import__("airflow").__version__.split(".")[0])

#: Secrets the deployment hands the provider: none may show in a log or a database dump.
EMULATOR_TOKEN = "emulator-token"
IAM_PASSWORD = "dq-password"
SECRET_KEY = "EMULATORSK00000000000000000000000000000000"
BAD_TOKEN = "e2e-wrong-token-6f1d2a"
#: Tokens the emulator issues start with this (see the emulator's IAM answer).
ISSUED_TOKEN_PREFIX = "MIIemu"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
EMULATOR_MODULE = "airflow_provider_dataqc.testing.emulator"

RACE_TEXT = re.compile(r"finished with state success, but the task instance's state attribute is (\w+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bindir() -> Path:
    """Debian's PostgreSQL server binaries, installed with apt-get when missing."""

    def found() -> Path | None:
        dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        return next((d for d in reversed(dirs) if (d / "initdb").exists()), None)

    bindir = found()
    if bindir is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise RuntimeError("PostgreSQL is not installed: run `apt-get install -y postgresql` (as root)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
        bindir = found()
    if bindir is None:
        raise RuntimeError("apt-get installed postgresql but no initdb under /usr/lib/postgresql/*/bin")
    return bindir


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Deployment:
    root: Path
    #: Settings added to every process's environment (they win over the defaults).
    environment: Mapping[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    launches: dict[str, int] = field(default_factory=dict)
    #: True: the emulator runs in this process (its request counts readable as ``self.emulator``).
    emulator_in_process: bool = False

    def __post_init__(self) -> None:
        self.pg_port = free_port()
        self.api_port = free_port()
        self.home = self.root / "airflow"
        self.files = self.root / "files"
        self.logs = self.root / "processes"
        self.emulator_url = ""
        self.emulator: Any = None
        self.admin_password = secrets.token_urlsafe(12)
        self._token = ""

    # ----------------------------------------------------------------- set-up
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(
            {
                "NO_PROXY": "127.0.0.1,localhost",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "32",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "256",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sqlalchemy_url,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._trigger_log_port),
                "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "DATAQC_DEMO_DIR": str(self.files),
                "PYTHONPATH": str(REPO),
            }
        )
        if AIRFLOW_MAJOR >= 3:
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                    "AIRFLOW__API__WORKERS": "1",
                    "AIRFLOW__API__BASE_URL": self.api_url,
                    "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                    # The task supervisor notices its task's exit this late at most: a trigger that
                    # fires inside that window meets Airflow's scheduler race (see the README).
                    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                }
            )
        else:
            env.update(
                {
                    "AIRFLOW__WEBSERVER__WORKERS": "1",
                    "AIRFLOW__WEBSERVER__SECRET_KEY": self._jwt_secret,
                    "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.api_port),
                    "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth",
                    # Airflow 2's default task-log line names the file, not the logger; with the
                    # logger's name the suite tells the provider's lines from Airflow's, as on 3.
                    "AIRFLOW__LOGGING__LOG_FORMAT": "[%(asctime)s] {%(name)s:%(lineno)d} %(levelname)s - %(message)s",
                }
            )
        env.update(self.environment)
        return env

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow"

    def start(self, dag_files: tuple[Path, ...] = ()) -> None:
        """Start everything; on any failure, stop what was started and re-raise."""
        try:
            self._start(dag_files)
        except BaseException:
            self.stop()
            raise

    def _start(self, dag_files: tuple[Path, ...]) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for folder in (self.home / "dags", self.files, self.logs):
            folder.mkdir(parents=True)
        self._fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        self._jwt_secret = secrets.token_urlsafe(32)
        self._worker_log_port, self._trigger_log_port = free_port(), free_port()
        for source in (*sorted(EXAMPLE_DAGS.glob("*.py")), *sorted(E2E_DAGS.glob("*.py")), *dag_files):
            (self.home / "dags" / source.name).symlink_to(source)
        self._start_postgres()
        self._start_emulator()
        self.airflow("db", "migrate")
        if AIRFLOW_MAJOR < 3:
            self.airflow(
                "users", "create", "--username", "admin", "--password", self.admin_password, "--role", "Admin",
                "--firstname", "e2e", "--lastname", "admin", "--email", "admin@example.invalid",
            )  # fmt: skip
        for conn_id, conn in self.connections().items():
            self.airflow("connections", "add", conn_id, "--conn-json", json.dumps(conn))
        if AIRFLOW_MAJOR >= 3:
            self.launch("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
            self.launch("dag-processor", "dag-processor")
        else:
            self.launch("webserver", "webserver", "--hostname", "127.0.0.1", "--port", str(self.api_port))
        self.launch("scheduler", "scheduler")
        self.launch("triggerer", "triggerer")
        self._wait_for(lambda: self._healthy(), 180, "the API server to answer")

    def connections(self) -> dict[str, dict[str, Any]]:
        base = {"conn_type": "dataqc", "host": self.emulator_url}
        extra = {"project_id": PROJECT_ID, "workspace": "ws-dev", "rate_limit": 0}
        return {
            "dataqc_default": {**base, "password": EMULATOR_TOKEN, "extra": extra},
            "dataqc_e2e_token": {**base, "password": EMULATOR_TOKEN, "extra": {**extra, "auth_type": "token"}},
            "dataqc_e2e_password": {
                **base,
                "login": "dq-user",
                "password": IAM_PASSWORD,
                "extra": {
                    **extra,
                    "auth_type": "password",
                    "domain_name": "dq-domain",
                    "iam_endpoint": self.emulator_url,
                },
            },
            "dataqc_e2e_aksk": {
                **base,
                "login": "EMULATORAK000000",
                "password": SECRET_KEY,
                "extra": {**extra, "auth_type": "ak_sk"},
            },
        }

    def _start_postgres(self) -> None:
        bindir = postgres_bindir()
        data = self.root / "pg"
        data.mkdir()
        # initdb refuses to run as root: the cluster belongs to the postgres system user then.
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
            shutil.chown(data, "postgres", "postgres")
        self.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "airflow", "-A", "trust", "-E", "UTF8"],
            log="initdb",
            **as_user,
        )
        self.launch(
            "postgres",
            str(bindir / "postgres"),
            "-D", str(data), "-p", str(self.pg_port), "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={data}", "-c", "max_connections=300", "-c", "fsync=off",
            airflow=False,
            **as_user,
        )  # fmt: skip
        self._wait_for(lambda: self._psql_ok("postgres"), 60, "PostgreSQL to accept connections")
        self.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "airflow", "airflow"],
            log="createdb",
        )
        self.pg_bindir = bindir

    def _psql_ok(self, database: str) -> bool:
        import psycopg2

        try:
            psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname=database).close()
        except psycopg2.OperationalError:
            return False
        return True

    def _start_emulator(self) -> None:
        if self.emulator_in_process:
            from airflow_provider_dataqc.testing.emulator import Emulator

            self.emulator = Emulator(host="127.0.0.1", port=0).start()
            self.emulator_url = self.emulator.url
            return
        log = self.logs / "emulator.log"
        with log.open("wb") as out:  # a file, not a pipe: the emulator may write at any time
            process = subprocess.Popen(
                # No flow control here nor in the connections (rate_limit 0): 200 waits of one
                # user would be throttled to 4 polls a second; throttling has tests of its own.
                [sys.executable, "-m", EMULATOR_MODULE, "--host", "127.0.0.1", "--port", "0", "--no-flow-control"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        self.services["emulator"] = Service("emulator", process, log)

        def listening() -> bool:
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
            self.emulator_url = match.group(1) if match else ""
            return match is not None

        self._wait_for(listening, 30, "the emulator to listen")

    # ------------------------------------------------------------- processes
    def run(self, argv: list[str], *, log: str, **kwargs: Any) -> str:
        out = self.logs / f"{log}.log"
        done = subprocess.run(argv, env=self.env(), capture_output=True, text=True, **kwargs)
        out.write_text(done.stdout + done.stderr)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv[:3])} failed ({done.returncode}), see {out}:\n{done.stderr[-2000:]}")
        return done.stdout

    def airflow(self, *args: str) -> str:
        return self.run([AIRFLOW, *args], log="cli-" + "-".join(a for a in args[:2] if not a.startswith("-")))

    def launch(self, name: str, *argv: str, airflow: bool = True, **kwargs: Any) -> Service:
        # A restarted service writes a log of its own: triggerer.log, then triggerer-2.log ...
        self.launches[name] = self.launches.get(name, 0) + 1
        log = self.logs / (f"{name}.log" if self.launches[name] == 1 else f"{name}-{self.launches[name]}.log")
        command = [AIRFLOW, *argv] if airflow else list(argv)
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True, **kwargs
            )
        service = Service(name, process, log)
        self.services[name] = service
        return service

    def stop_service(self, name: str, timeout: float = 60) -> None:
        """SIGTERM the service's process group, SIGKILL whatever is left after ``timeout`` s."""
        service = self.services.pop(name, None)
        if service is not None:
            _terminate(service.process.pid, timeout, sig=signal.SIGINT if name == "postgres" else signal.SIGTERM)

    def restart_triggerer(self) -> None:
        self.stop_service("triggerer")
        self.launch("triggerer", "triggerer")

    def stop(self) -> None:
        """Stop every process this deployment started (Airflow first, PostgreSQL last)."""
        for name in [n for n in self.services if n not in ("postgres", "emulator")]:
            self.stop_service(name)
        self.stop_service("emulator", 10)
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        self.stop_service("postgres", 30)

    def alive(self) -> list[str]:
        return [f"{s.name} ({s.process.pid})" for s in [*self.services.values()] if s.process.poll() is None]

    def _wait_for(self, ready: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            dead = [s for s in self.services.values() if s.process.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited while waiting for {what}: see {dead[0].log}")
            if ready():
                return
            time.sleep(1)
        raise RuntimeError(f"timed out waiting {seconds:.0f}s for {what} (logs in {self.logs})")

    # ------------------------------------------------------------------- API
    def _healthy(self) -> bool:
        path = "/api/v2/monitor/health" if AIRFLOW_MAJOR >= 3 else "/health"
        try:
            with urllib.request.urlopen(self.api_url + path, timeout=5) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _auth_header(self) -> str:
        if AIRFLOW_MAJOR < 3:
            return "Basic " + base64.b64encode(f"admin:{self.admin_password}".encode()).decode()
        if not self._token:
            with urllib.request.urlopen(self.api_url + "/auth/token", timeout=30) as answer:
                self._token = json.loads(answer.read())["access_token"]
        return f"Bearer {self._token}"

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the REST API (``/api/v2`` on Airflow 3, ``/api/v1`` on Airflow 2) as the admin."""
        prefix = "/api/v2" if AIRFLOW_MAJOR >= 3 else "/api/v1"
        request = urllib.request.Request(
            self.api_url + prefix + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": self._auth_header()},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def trigger_api(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        body: dict[str, Any] = {"conf": dict(conf)}
        if AIRFLOW_MAJOR >= 3:
            body["logical_date"] = None
        status, answer = self.api("POST", f"/dags/{dag_id}/dagRuns", body)
        if status != 200:
            raise RuntimeError(f"triggering {dag_id} through the API answered {status}: {answer}")
        return str(answer["dag_run_id"])

    # -------------------------------------------------------------- database
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        db = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname="airflow")
        try:
            with db, db.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            db.close()

    def pg_dump(self, *exclude: str) -> str:
        argv = [str(self.pg_bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "airflow"]
        argv += [f"--exclude-table={table}" for table in exclude]
        return self.run([*argv, "airflow"], log="pg_dump")

    def log_files(self) -> Iterator[Path]:
        """Every log file: Airflow's (tasks, triggers, DAG processing) and the processes' output."""
        for folder in (self.home / "logs", self.logs):
            yield from (p for p in folder.rglob("*") if p.is_file())


def _terminate(pid: int, timeout: float, sig: signal.Signals = signal.SIGTERM) -> None:
    """End ``pid``, its process group and every descendant (LocalExecutor's task processes)."""
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with _quiet():
        os.killpg(pid, sig)
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for process in alive:
        with _quiet():
            process.kill()
    with _quiet():
        os.killpg(pid, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=10)
    # Reap the direct child so it does not linger as a zombie.
    with _quiet():
        os.waitpid(pid, 0)


def _quiet() -> contextlib.suppress:
    return contextlib.suppress(ProcessLookupError, ChildProcessError, psutil.Error)
