"""Apache Airflow provider for Huawei Cloud DataArts Studio Data Quality (DQC)."""

__version__ = "0.1.0"
