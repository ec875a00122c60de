"""Dagster's stale status in Python, for the tests that assert what the UI shows.

No public API returns an asset's stale status in Python (the UI reads it over GraphQL, which
``lo2_dagster.devserver`` uses against a running server), so this test helper reads it through
Dagster's own resolver. The package never does: ``lo2-dagster run`` and the schedules ask the
automation conditions (``lo2_dagster.pipeline``)."""

import datetime as dt
from collections.abc import Iterable
from typing import Any

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver

from lo2_dagster.defs.keys import SEQUENCES_ENHANCED, TRAINING_SET
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.versions import DATA_VERSION_TAG, fingerprint_of, partition_data_versions

#: Stale statuses, as ``stale_status`` returns them (the values of Dagster's ``StaleStatus``).
FRESH, STALE, MISSING = "FRESH", "STALE", "MISSING"


def stale_status(instance: dg.DagsterInstance, graph: Any,
                 targets: Iterable[tuple[dg.AssetKey, str | None]]
                 ) -> dict[tuple[dg.AssetKey, str | None], tuple[str, list[Any]]]:
    """Dagster's stale status (``FRESH``, ``STALE`` or ``MISSING``) of each (asset, partition)
    of ``graph`` (``Definitions.resolve_asset_graph()``), as the UI shows it, with the direct
    causes when stale (a dependency's new data version, a changed code version, ...)."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=dt.datetime.now(dt.UTC),
                                         last_event_id=None),
        instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance, graph, loading_context=view)
    result = {}
    for key, partition in targets:
        status = resolver.get_status(key, partition).value
        causes = list(resolver.get_stale_causes(key, partition)) if status == STALE else []
        result[(key, partition)] = (status, causes)
    return result


def describe(cause: Any) -> str:
    """A stale cause in words: the dependency (with its partition) and Dagster's reason."""
    where = cause.dependency or cause.key
    name = where.asset_key.to_user_string()
    return f"{name}[{where.partition_key}] {cause.reason}" if where.partition_key \
        else f"{name} {cause.reason}"


def training_set_is_current(instance: dg.DagsterInstance) -> bool:
    """Whether lo2/training_set's fingerprint is that of the runs as they are now (what Dagster's
    staleness cannot tell once there are 100 runs or more)."""
    event = instance.get_latest_materialization_event(TRAINING_SET)
    if event is None or event.asset_materialization is None:
        return False
    runs = instance.get_dynamic_partitions(RUNS.name)
    recorded = event.asset_materialization.tags.get(DATA_VERSION_TAG)
    return recorded == fingerprint_of(partition_data_versions(instance, SEQUENCES_ENHANCED, runs))
