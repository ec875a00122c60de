"""Dagster definitions, one folder per domain, loaded by ``lo2_dagster.definitions``."""
