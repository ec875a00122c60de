"""The code location: every domain under ``lo2_dagster/defs``, run in-process.

In-process execution is a deliberate policy: per-run assets are sequential steps, and the
multiprocess executor costs 11-16 s of start-up per run on a 2-core machine.
"""

import warnings
from pathlib import Path

import dagster as dg

# Data versions from file contents (Output(data_version=...)) are the point of the ingest
# assets; Dagster marks that parameter beta, which would warn on every materialization.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*data_version.*")
# The FP allowlist is an observable source asset declared with an AssetSpec (for its owners and
# kinds): the decorator that takes specs is beta too.
warnings.filterwarnings("ignore", category=dg.BetaWarning,
                        message=".*multi_observable_source_asset.*")
# Checks of per-run assets are evaluated per partition (a failure in one run is not hidden by a
# pass in the next): partitioned check specs are a preview feature.
warnings.filterwarnings("ignore", category=dg.PreviewWarning,
                        message=".*partitions_def on an AssetCheckSpec.*")


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=dg.in_process_executor),
    )
