"""Test set-up: Airflow state in a temporary directory, the local emulator, connections."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Airflow reads its configuration when first imported: point it at a throw-away
# home before anything imports it, so no test writes to ~/airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dataqc-tests-airflow-"))
_DAGS_FOLDER = _AIRFLOW_HOME / "dags"
_DAGS_FOLDER.mkdir()
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ.pop("AIRFLOW_CONN_DATAQC_DEFAULT", None)
# dag.test() runs tasks and triggers in this process, with no task supervisor to notice a
# deferral late, so no scheduler race to keep a first trigger poll away from; with the
# default (5 s) every deferral here would wait 6 s (tests of that delay set it themselves).
os.environ["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"] = "0"

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DAGS = REPO / "example_dags"
TEST_DAGS = Path(__file__).resolve().parent / "dags"

if TYPE_CHECKING:
    from airflow_provider_dataqc.testing.emulator import Emulator


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One emulator for the session; tests use their own resource IDs or :meth:`Emulator.script`."""
    from airflow_provider_dataqc.testing.emulator import Emulator

    with Emulator() as emu:
        yield emu


@pytest.fixture
def fresh_emulator() -> Iterator[Emulator]:
    """An emulator of the test's own, for tests that count requests or inject faults."""
    from airflow_provider_dataqc.testing.emulator import Emulator

    with Emulator() as emu:
        yield emu


def connection_json(emu: Emulator, auth_type: str = "token", **extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` value pointing at ``emu``."""
    from airflow_provider_dataqc.testing.emulator import (
        DEFAULT_AKSK,
        DEFAULT_PROJECT_ID,
        DEFAULT_TOKEN,
        DEFAULT_USER,
        DEFAULT_WORKSPACE,
    )

    conn: dict[str, Any] = {"conn_type": "dataqc", "host": emu.url}
    settings: dict[str, Any] = {
        "project_id": DEFAULT_PROJECT_ID,
        "workspace": DEFAULT_WORKSPACE,
        "auth_type": auth_type,
        "backoff_factor": 0.01,
        # The suite makes many quick calls: the flow-control budget is tested on its own.
        "rate_limit": 0,
    }
    if auth_type == "token":
        conn["password"] = DEFAULT_TOKEN
    elif auth_type == "password":
        conn["login"], conn["password"], settings["domain_name"] = DEFAULT_USER
        settings["iam_endpoint"] = emu.url
    elif auth_type == "aksk":
        conn["login"], conn["password"] = DEFAULT_AKSK
    settings.update(extra)
    conn["extra"] = settings
    return json.dumps(conn)


def set_connection(
    monkeypatch: pytest.MonkeyPatch,
    emu: Any,
    conn_id: str,
    mode: str,
    *,
    password: str | None = None,
    **extra: Any,
) -> str:
    """Point ``conn_id`` at ``emu`` with auth ``mode``; ``password`` replaces the good secret."""
    conn = json.loads(connection_json(emu, mode, **extra))
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


@pytest.fixture
def use_connection(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``use_connection(emu, auth_type="token", conn_id="dataqc_default", **extra)``."""

    def _use(emu: Emulator, auth_type: str = "token", conn_id: str = "dataqc_default", **extra: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(emu, auth_type, **extra))
        return conn_id

    return _use


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    from airflow_provider_dataqc.core.auth import TOKEN_CACHE

    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create Airflow's SQLite metadata database once per session."""
    from airflow.utils import db

    db.initdb()


@pytest.fixture
def run_dag(airflow_db: None) -> Any:
    """``run_dag(dag_id, *, files=(...), conf=None)`` copies DAG files into the DAGs
    folder, loads them with a real DagBag and runs ``dag.test()``; returns
    ``(dagrun_state, {task_id: state})``."""

    def _run(dag_id: str, *, files: tuple[Path, ...], conf: dict[str, Any] | None = None) -> Any:
        for file in files:
            shutil.copy(file, _DAGS_FOLDER / file.name)
        bag = _dag_bag()
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"{dag_id} not found in {sorted(bag.dag_ids)}"
        run = dag.test(run_conf=conf) if conf else dag.test()
        states = _task_states(run)
        return str(run.state), states

    return _run


def _dag_bag(folder: Path = _DAGS_FOLDER) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    kwargs: dict[str, Any] = {"dag_folder": str(folder)}
    if "include_examples" in DagBag.__init__.__code__.co_varnames:
        kwargs["include_examples"] = False
    return DagBag(**kwargs)


def _dag_bag_for(path: Path) -> Any:
    """A DagBag of one DAG file (parsed, not run)."""
    return _dag_bag(path)


def _task_states(run: Any) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(TaskInstance.task_id, TaskInstance.state)
            .filter(TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id)
            .all()
        )
    return {task_id: str(getattr(state, "value", state)) for task_id, state in rows}


sys.path.insert(0, str(REPO))


class TaskLogs(logging.Handler):
    """Everything hooks, sensors, operators and triggers logged during a test.

    Airflow 3 logs through structlog to standard output, Airflow 2 through the
    ``logging`` module with handlers that do not reach pytest's ``caplog``: this
    collects both, so tests read one text whatever the Airflow version.
    """

    _LEVEL_MARKS = {
        "debug": ("[debug", "DEBUG"),
        "info": ("[info", "INFO"),
        "warning": ("[warning", "WARNING"),
        "error": ("[error", "ERROR"),
    }

    def __init__(self, capfd: pytest.CaptureFixture[str]) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._capfd = capfd
        self._seen = ""

    def emit(self, record: logging.LogRecord) -> None:
        if not any(record is seen for seen in self.records):
            self.records.append(record)

    def text(self) -> str:
        """The captured output followed by every record (a line may therefore appear twice)."""
        out, err = self._capfd.readouterr()
        self._seen += out + err
        return "\n".join([self._seen, *(f"{r.levelname} {r.getMessage()}" for r in self.records)])

    def lines(self, level: str | None = None) -> list[str]:
        """Lines of the log, only those at ``level`` (debug/info/warning/error) if given."""
        lines = self.text().splitlines()
        if level is None:
            return lines
        marks = self._LEVEL_MARKS[level]
        return [line for line in lines if any(mark in line for mark in marks)]


@pytest.fixture
def task_logs(capfd: pytest.CaptureFixture[str]) -> Iterator[TaskLogs]:
    handler = TaskLogs(capfd)
    loggers = [logging.getLogger(name) for name in ("", "airflow.task", "airflow.triggers", "airflow_provider_dataqc")]
    # Airflow 2's dag.test() adds a stdout handler once per process; a later test's
    # capture would find it writing to an earlier test's closed stream.
    for logger in loggers:
        for stale in [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]:
            if getattr(stale.stream, "closed", False):
                logger.removeHandler(stale)
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in zip(loggers, levels, strict=False):
        logger.removeHandler(handler)
        logger.setLevel(level)
