"""One partition per LO2 run folder; the key is the folder name."""

import dagster as dg

RUNS = dg.DynamicPartitionsDefinition(name="lo2_runs")
