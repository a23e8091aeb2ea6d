"""A local HTTP emulator of DataArts Studio Data Quality (DQC) and IAM token issuance.

It serves, on loopback only, the five ``/v2/{project_id}/quality/resource/`` calls
(status, export, upload, import, download) and IAM's ``POST /v3/auth/tokens``,
with the authentication, workspace checks and error bodies described in
``dataarts-quality-api.md``. Tests, benchmarks and the demo run against it.

Life cycles are deterministic: a task moves ONE step per status poll that it
answers; injected faults never move it. Resource IDs nobody created follow a
naming convention so that separate processes can use them (``N`` polls, then the
final state, which then repeats; a ``-suffix`` such as ``success-3-run7`` is allowed):

* ``success-N``: WAITING, then RUNNING..., then SUCCESS with file_status GENERATED;
* ``failed-N``: the same, ending FAILED with :data:`FAILED_MESSAGE`;
* ``timeout-N``: the same, ending TIMEOUT with an error_msg;
* ``filefail-N``: the same, ending SUCCESS with file_status FAILED;
* ``slowfile-N``: SUCCESS with file_status PREPARING for N polls, then GENERATED;
* ``unknown-N``: the undocumented status PAUSED for N polls, then SUCCESS.

Any other ID answers 404 ``DQC.1016`` unless it was created by an export or upload
or scripted with :meth:`Emulator.script`. ``Emulator(not_found_status=500)`` (or 400) answers
"not found" in the form the status page documents instead: HTTP 500 with
``{"error_code": "DQC.1016", "error_msg": ...}``.

Set-up API (``Emulator(...)`` keyword arguments): ``host`` (loopback only), ``port`` (0: any
free port), ``project_id``, ``workspaces``, ``token_lifetime``, ``download_size``, ``faults``
(a :class:`FaultPlan`), ``seed``, ``user`` (IAM name, password, domain), ``aksk`` (AK -> SK),
``tokens`` (static tokens), ``domain_id``, ``export_script`` / ``import_script`` (life cycles
of new exports / imports), ``max_upload_size``, ``max_recorded``, ``flow_control`` (``True``
or a :class:`FlowControl`: the gateway's documented request windows; off by default, on in
the command line unless ``--no-flow-control``), ``not_found_status`` (404, 400 or 500).
Methods and counters: :meth:`Emulator.flow_stats` and ``throttled`` (429s answered, requests
served per API and per credential identity),
:meth:`Emulator.script`, :meth:`Emulator.revoke_tokens`, :meth:`Emulator.count`,
:meth:`Emulator.reset_counts`, :meth:`Emulator.exports`, :meth:`Emulator.uploads`,
:meth:`Emulator.imported`; attributes ``requests``, ``faults_injected``, ``iam_calls``,
``issued_tokens``.

Quality and comparison jobs (``/v2/{project_id}/quality/``: ``quality-tasks[/{id}]``,
``consistency-tasks[/{id}]``, ``instances/restart``, ``instances`` with its filters and paging,
``instances/{id}/result``, ``instances/batch-stop``) follow ``dataarts-quality-jobs-api.md``.
IDs are 19-digit JSON numbers above 2**53. A run moves one step per instance-list answer that
shows it (faults and 429s move nothing). Every emulator has the jobs of :data:`SEEDED_JOBS`:
``1440764172232392705`` dq_orders_pass (RUNNING, RUNNING, SUCCESS), ``...706`` dq_orders_alarm
(ends ALARMING, two of three rules alarmed), ``...707`` dq_orders_fail (FAILED), ``...708``
dq_orders_late (listed only from the 4th list call on, then SUCCESS), ``...709`` dq_orders_long
(RUNNING for ever), ``...801`` cmp_orders_pass and ``...802`` cmp_orders_alarm (comparison jobs).
Set-up methods: :meth:`Emulator.add_quality_job` (name, sub-rules, run script, results,
``appear_after_lists`` / ``appear_after_seconds``, workspace; returns the job ID),
:meth:`Emulator.script_runs` (the next runs of a job), :meth:`Emulator.script_run` (one run),
:meth:`Emulator.start_run` (a run started by DataArts' own schedule), :meth:`Emulator.job_runs`
(what happened: status, stopped, polls); ``stopped_status`` (default SUSPENDING, the documented
status nearest "stopped": stopped runs answer it from then on).

Run it standalone with ``python -m airflow_provider_dataqc.testing.emulator --port 8080``.
No Airflow import here.

Modules, one job each: :mod:`.defaults` (vocabulary), :mod:`.state` (shared state, records,
JSON answers), :mod:`.resources` (scripted export/import tasks), :mod:`.identity` (IAM,
tokens, AK/SK, project and workspace checks), :mod:`.handlers` (the five calls),
:mod:`.faults` (fault plans), :mod:`.flow` (flow control), :mod:`.files` (the streamed ZIP, multipart parsing),
:mod:`.jobs` (jobs, runs and their set-up), :mod:`.job_handlers` (the job calls),
:mod:`.routing` (classification and order of checks), :mod:`.server` (the server's life
cycle and :class:`Emulator`), ``__main__`` (the command line).
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_dataqc.core.settings import is_loopback_host
from airflow_provider_dataqc.testing.emulator.defaults import (
    CONVENTION_KINDS,
    DEFAULT_AKSK,
    DEFAULT_DOMAIN_ID,
    DEFAULT_EXPORT_SCRIPT,
    DEFAULT_IMPORT_SCRIPT,
    DEFAULT_PROJECT_ID,
    DEFAULT_REGION,
    DEFAULT_TOKEN,
    DEFAULT_USER,
    DEFAULT_WORKSPACE,
    DEFAULT_WORKSPACES,
    FAILED_MESSAGE,
    MAX_CONVENTION_STEPS,
    OPERATIONS,
    TIMEOUT_MESSAGE,
)
from airflow_provider_dataqc.testing.emulator.faults import DEFAULT_FAULT_MIX, FAULT_KINDS, FaultPlan
from airflow_provider_dataqc.testing.emulator.files import read_manifest
from airflow_provider_dataqc.testing.emulator.flow import FlowControl, FlowStats
from airflow_provider_dataqc.testing.emulator.jobs import (
    DEFAULT_RUN_SCRIPT,
    RUN_STATUSES,
    SEEDED_JOBS,
)
from airflow_provider_dataqc.testing.emulator.resources import STEP_ANSWER_KEYS
from airflow_provider_dataqc.testing.emulator.server import Emulator, running_emulator, running_emulator_async
from airflow_provider_dataqc.testing.emulator.state import RecordedRequest

__all__ = [
    "CONVENTION_KINDS",
    "DEFAULT_AKSK",
    "DEFAULT_DOMAIN_ID",
    "DEFAULT_EXPORT_SCRIPT",
    "DEFAULT_FAULT_MIX",
    "DEFAULT_IMPORT_SCRIPT",
    "DEFAULT_PROJECT_ID",
    "DEFAULT_REGION",
    "DEFAULT_RUN_SCRIPT",
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "DEFAULT_WORKSPACE",
    "DEFAULT_WORKSPACES",
    "FAILED_MESSAGE",
    "FAULT_KINDS",
    "MAX_CONVENTION_STEPS",
    "OPERATIONS",
    "RUN_STATUSES",
    "SEEDED_JOBS",
    "STEP_ANSWER_KEYS",
    "TIMEOUT_MESSAGE",
    "Emulator",
    "FaultPlan",
    "FlowControl",
    "FlowStats",
    "RecordedRequest",
    "is_loopback_host",
    "main",
    "read_manifest",
    "running_emulator",
    "running_emulator_async",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_provider_dataqc.testing.emulator --port N``: serve until SIGTERM/SIGINT."""
    # Imported here, not at the top: ``python -m`` must find ``__main__`` not yet imported.
    from airflow_provider_dataqc.testing.emulator.__main__ import run

    return run(argv)
