"""Data versions and staleness as Dagster records them, for the main job, the schedules and the
training-set fingerprint.

Everything here is public API except ``stale_status``: Dagster exposes an asset's stale status
to the UI (GraphQL) but not in Python, so that one function reads it through Dagster's own
resolver (``dagster._core``), imported inside the function so that nothing else depends on it.
Issue 15 replaces it with the automation conditions (``dg.evaluate_automation_conditions``).
"""

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

#: The tag under which Dagster records a materialization's or observation's data version
#: (the ``dagster/data_version`` of ``dg.DataVersion``, as the UI shows it).
DATA_VERSION_TAG = "dagster/data_version"

__all__ = ["DATA_VERSION_TAG", "describe", "fingerprint_of", "partition_data_versions",
           "stale_status"]


def fingerprint_of(versions: Mapping[str, str]) -> str:
    """One hash of named versions (e.g. run -> data version), independent of their order."""
    text = "".join(f"{name}={version}\n" for name, version in sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def partition_data_versions(instance: dg.DagsterInstance, key: dg.AssetKey,
                            partitions: Sequence[str], observed: bool = False) -> dict[str, str]:
    """The data version of each materialized (``observed``: observed) partition among
    ``partitions``, sorted by partition, in one query of the event log."""
    kind = dg.DagsterEventType.ASSET_OBSERVATION if observed else \
        dg.DagsterEventType.ASSET_MATERIALIZATION
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        key, kind, [DATA_VERSION_TAG], asset_partitions=list(partitions))
    return {p: tags[p][DATA_VERSION_TAG] for p in sorted(tags) if DATA_VERSION_TAG in tags[p]}


#: Stale statuses, as ``stale_status`` returns them (the values of Dagster's ``StaleStatus``).
FRESH, STALE, MISSING = "FRESH", "STALE", "MISSING"


def stale_status(instance: dg.DagsterInstance, graph: Any,
                 targets: Iterable[tuple[dg.AssetKey, str | None]]
                 ) -> dict[tuple[dg.AssetKey, str | None], tuple[str, list[Any]]]:
    """Dagster's stale status (``FRESH``, ``STALE`` or ``MISSING``) of each (asset, partition)
    of ``graph`` (``Definitions.resolve_asset_graph()``), as the UI shows it, with the direct
    causes when stale (a dependency's new data version, a changed code version, ...)."""
    # Private: no public API returns stale status in Python (see the module docstring).
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver

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
