"""Apache Airflow provider for Huawei Cloud DataArts Studio Data Quality (DQC)."""

__version__ = "0.1.0"

#: The connection ID every hook, sensor, operator and trigger uses unless told otherwise.
DEFAULT_CONN_ID = "dataqc_default"
