"""The ``dataqc`` connection: its form in Airflow 2's UI, and reading it into validated
settings with its secrets masked.

Shared by the sync hook and the async hook (which reads the connection without blocking
its event loop and masks the secrets asynchronously).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_dataqc.core.settings import ConnectionSettings, InvalidSettingError
from airflow_provider_dataqc.exceptions import DataQCApiError
from airflow_provider_dataqc.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR


def settings_from_connection(
    conn: Any,
    extra: Mapping[str, Any],
    *,
    project_id: str | None = None,
    mask: bool = True,
    name_connection: bool = True,
) -> ConnectionSettings:
    """Validate an Airflow connection and register its secrets with the log masker.

    :param mask: register the secrets here (synchronously); the async hook passes
        ``False`` and masks them without blocking its event loop.
    :param name_connection: say which connection is wrong (``False`` for a connection test,
        whose connection ID is a random temporary one).
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
        where = f"connection {conn.conn_id!r}" if name_connection else "the connection"
        raise DataQCApiError(f"{where} is not usable: {err}") from None


def mask_secret_value(value: str) -> None:
    """Register a secret with Airflow's masker so it never reaches a log."""
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(value)


def ui_field_behaviour() -> dict[str, Any]:
    """Hidden fields, labels and placeholders of the connection form (Airflow 2)."""
    return {
        "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
        "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
        "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
    }


def connection_form_widgets() -> dict[str, Any]:
    """The extra fields of the connection form (Airflow 2; Flask is imported only here)."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import PasswordField, StringField

    widgets: dict[str, Any] = {}
    for name, spec in CONN_FIELDS.items():
        secret = spec["schema"].get("format") == "password"
        field_class, widget = (PasswordField, BS3PasswordFieldWidget) if secret else (StringField, BS3TextFieldWidget)
        widgets[name] = field_class(lazy_gettext(spec["label"]), widget=widget(), description=spec.get("description"))
    return widgets
