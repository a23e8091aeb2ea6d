"""Provider metadata read by Airflow's providers manager (imports nothing)."""

from __future__ import annotations

from typing import Any

_STRING = {"type": ["string", "null"]}

CONN_FIELDS: dict[str, dict[str, Any]] = {
    "project_id": {
        "label": "Project ID",
        "description": "Huawei Cloud project ID of the region (required). My Credentials > API Credentials.",
        "schema": _STRING,
    },
    "workspace": {
        "label": "Workspace ID",
        "description": "Default DataArts Studio workspace ID (the workspace= parameter of the console URL). "
        "Tasks may override it.",
        "schema": _STRING,
    },
    "region": {
        "label": "Region",
        "description": "Region ID such as cn-north-4. Used to build the endpoint (and the IAM endpoint) "
        "when they are left empty.",
        "schema": _STRING,
    },
    "auth_type": {
        "label": "Auth type",
        "description": "token: the password field holds an IAM token. password: IAM user name and password "
        "(a token is fetched and cached). ak_sk (also written aksk): Access Key and Secret Key "
        "(requests are signed).",
        # Every value is 5 characters or more: Airflow 3 hands each extra value to its log masker,
        # which warns in every task log about a value shorter than that ("aksk").
        "schema": {
            "type": ["string", "null"],
            "enum": ["token", "password", "ak_sk", None],
            "default": "token",
        },
    },
    "domain_name": {
        "label": "Account (domain) name",
        "description": "Huawei Cloud account name that owns the IAM user (auth type password).",
        "schema": _STRING,
    },
    "security_token": {
        "label": "Security token",
        "description": "Security token of temporary AK/SK credentials (auth type aksk).",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "iam_endpoint": {
        "label": "IAM endpoint",
        "description": "Default https://iam.{region}.myhuaweicloud.com (auth type password).",
        "schema": _STRING,
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {
        "host": "Endpoint",
        "login": "User name or Access Key",
        "password": "Password, Secret Key or token",
    },
    "placeholders": {
        "host": "https://dayu.cn-north-4.myhuaweicloud.com (empty: built from region)",
        "login": "IAM user name (password auth) or Access Key (aksk auth); empty for token auth",
        "password": "IAM password, Secret Key or IAM token",
        "project_id": "0123456789abcdef0123456789abcdef",
        "workspace": "workspace ID from the DataArts Studio console URL",
        "region": "cn-north-4",
        "auth_type": "token, password or ak_sk",
        "domain_name": "account name (password auth only)",
        "iam_endpoint": "https://iam.cn-north-4.myhuaweicloud.com",
        "extra": '{"timeout": 30, "connect_timeout": 10, "max_retries": 3, "verify": true}',
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-dataqc",
        "name": "Huawei Cloud DataArts Quality (DQC)",
        "description": "Wait on, export, download and import Huawei Cloud DataArts Studio "
        "Data Quality resources (quality rules, jobs and reports).",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Huawei Cloud DataArts Quality",
                "external-doc-url": "https://support.huaweicloud.com/intl/en-us/api-dataartsstudio/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Huawei Cloud DataArts Quality",
                "python-modules": [
                    "airflow_provider_dataqc.hooks.dataqc",
                    "airflow_provider_dataqc.hooks.dataqc_async",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Huawei Cloud DataArts Quality",
                "python-modules": ["airflow_provider_dataqc.sensors.dataqc", "airflow_provider_dataqc.sensors.quality"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Huawei Cloud DataArts Quality",
                "python-modules": [
                    "airflow_provider_dataqc.triggers.dataqc",
                    "airflow_provider_dataqc.triggers.quality",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Huawei Cloud DataArts Quality",
                "python-modules": [
                    "airflow_provider_dataqc.operators.dataqc",
                    "airflow_provider_dataqc.operators.quality",
                ],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_dataqc.hooks.dataqc.DataQCHook",
                "hook-name": "Huawei Cloud DataArts Quality",
                "connection-type": "dataqc",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
