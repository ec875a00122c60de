"""lo2_dagster: a Dagster code location for anomaly detection on the LO2 (Light-OAuth2) logs."""

__version__ = "0.1.0"
