"""Reading a ``dataqc`` Airflow connection into validated settings, its secrets masked.

Shared by the sync hook and the async hook (which reads the connection without blocking
its event loop and masks the secrets asynchronously).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_dataqc.core.settings import ConnectionSettings, InvalidSettingError
from airflow_provider_dataqc.exceptions import DataQCApiError


def settings_from_connection(
    conn: Any, extra: Mapping[str, Any], *, project_id: str | None = None, mask: bool = True
) -> ConnectionSettings:
    """Validate an Airflow connection and register its secrets with the log masker.

    :param mask: register the secrets here (synchronously); the async hook passes
        ``False`` and masks them without blocking its event loop.
    :raises DataQCApiError: naming the field that is wrong.
    """
    for secret in (conn.password, extra.get("security_token")) if mask else ():
        if secret:
            mask_secret_value(str(secret))
    try:
        return ConnectionSettings.from_connection(
            host=conn.host,
            login=conn.login,
            password=conn.password,
            port=conn.port,
            schema=conn.schema,
            extra=extra,
            conn_id=conn.conn_id,
            project_id=project_id,
        )
    except InvalidSettingError as err:
        raise DataQCApiError(f"connection {conn.conn_id!r} is not usable: {err}") from None


def mask_secret_value(value: str) -> None:
    """Register a secret with Airflow's masker so it never reaches a log."""
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(value)
