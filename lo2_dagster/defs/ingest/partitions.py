"""One partition per LO2 run folder; the key is the folder name."""

import dagster as dg

from lo2_dagster.lib.names import InvalidRunKey, validate_run_key

RUNS = dg.DynamicPartitionsDefinition(name="lo2_runs")

#: Input metadata of an unpartitioned asset that reads "every run materialized so far".
ALL_RUNS = {"allow_missing_partitions": True}


def run_key(context: dg.AssetExecutionContext) -> str:
    """The partition key, validated as a run folder name (a bad key fails with the fix)."""
    try:
        return validate_run_key(context.partition_key)
    except InvalidRunKey as e:
        raise dg.Failure(description=str(e)) from e
