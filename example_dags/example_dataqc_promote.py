"""Promote DataArts Quality jobs from a dev workspace to prod: export, wait, keep the file, import, wait.

The file lands in object storage (any ``ObjectStoragePath`` URL: ``s3://`` for OBS
through its S3-compatible endpoint, ``file://`` here), so it outlives the worker and
is kept as the release artefact. The wait for the export is a task of its own, so a
retry of the wait never starts a second export. ``keep_export_file`` returns
``{"destination", "size", "sha256", "file_name"}``; ``import_into_prod`` returns what
the upload reported (``resource_id``, ``topics``, ``directories`` ...).
"""

from __future__ import annotations

import os
import re
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_dataqc.operators.dataqc import (
    DataQCDownloadOperator,
    DataQCExportOperator,
    DataQCImportOperator,
)
from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

ARCHIVE = os.environ.get("DATAQC_DEMO_DIR", "/tmp/dataqc-exports")


def file_safe(text: str) -> str:
    """``manual__2024-01-01T00:00:00+00:00`` -> ``manual__2024-01-01T00-00-00-00-00``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text))


with DAG(
    dag_id="example_dataqc_promote",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={
        "quality_jobs": Param([101, 102, 103], type="array", description="IDs of the quality jobs to promote"),
        "archive": Param(f"file://{ARCHIVE}", type="string", description="where exported files are kept"),
    },
    # The file is named after the run ID: every run has one (a run triggered by hand has no
    # logical date, so no ts_nodash), and file_safe makes it a valid file name.
    user_defined_filters={"file_safe": file_safe},
    tags=["example", "dataqc"],
) as dag:
    # Waits poll every 10 s: a deferral that ends within a few seconds can be undone by an
    # Airflow 3 scheduler race (see the README's "Limits worth knowing").
    export = DataQCExportOperator(
        task_id="export_from_dev",
        resource_type="quality-task",
        resource_ids="{{ params.quality_jobs }}",
        workspace="ws-dev",
    )
    wait_for_export = DataQCResourceStatusSensor(
        task_id="wait_for_export",
        resource_id=export.output,
        workspace="ws-dev",
        wait_for_file=True,
        deferrable=True,
        poke_interval=10,
        timeout=600,
    )
    download = DataQCDownloadOperator(
        task_id="keep_export_file",
        resource_id=export.output,
        resource_type="quality-task",
        workspace="ws-dev",
        destination="{{ params.archive }}/quality-jobs-{{ run_id | file_safe }}.zip",
    )
    import_into_prod = DataQCImportOperator(
        task_id="import_into_prod",
        source="{{ ti.xcom_pull(task_ids='keep_export_file')['destination'] }}",
        resource_type="quality-task",
        strategy="OVERRIDE",
        workspace="ws-prod",
        deferrable=True,
        poll_interval=10,
        wait_timeout=600,
    )

    export >> wait_for_export >> download >> import_into_prod
