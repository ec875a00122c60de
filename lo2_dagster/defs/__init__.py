"""Dagster definitions, one folder per domain, loaded by ``lo2_dagster.definitions``."""

import warnings

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
# Per-run assets batch runs in backfills (BackfillPolicy.multi_run): a beta parameter.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
