"""Data versions and staleness as Dagster records them, for the main job, the schedules and the
training-set fingerprint."""

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    CachingStaleStatusResolver,
    StaleCause,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._core.events import DagsterEventType
from dagster._time import get_current_datetime

__all__ = ["StaleCause", "StaleCauseCategory", "StaleStatus", "describe", "fingerprint_of",
           "partition_data_versions", "stale_status"]


def fingerprint_of(versions: Mapping[str, str]) -> str:
    """One hash of named versions (e.g. run -> data version), independent of their order."""
    text = "".join(f"{name}={version}\n" for name, version in sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def partition_data_versions(instance: dg.DagsterInstance, key: dg.AssetKey,
                            partitions: Sequence[str], observed: bool = False) -> dict[str, str]:
    """The data version of each materialized (``observed``: observed) partition among
    ``partitions``, sorted by partition, in one query of the event log."""
    kind = DagsterEventType.ASSET_OBSERVATION if observed else \
        DagsterEventType.ASSET_MATERIALIZATION
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        key, kind, [DATA_VERSION_TAG], asset_partitions=list(partitions))
    return {p: tags[p][DATA_VERSION_TAG] for p in sorted(tags) if DATA_VERSION_TAG in tags[p]}


def stale_status(instance: dg.DagsterInstance, graph: BaseAssetGraph,
                 targets: Iterable[tuple[dg.AssetKey, str | None]]
                 ) -> dict[tuple[dg.AssetKey, str | None], tuple[StaleStatus, list[StaleCause]]]:
    """Dagster's stale status of each (asset, partition), as the UI shows it, with the direct
    causes when stale (a dependency's new data version, a changed code version, ...)."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance, graph, loading_context=view)
    result = {}
    for key, partition in targets:
        status = resolver.get_status(key, partition)
        causes = list(resolver.get_stale_causes(key, partition)) \
            if status == StaleStatus.STALE else []
        result[(key, partition)] = (status, causes)
    return result


def describe(cause: StaleCause) -> str:
    """A stale cause in words: the dependency (with its partition) and Dagster's reason."""
    where = cause.dependency or cause.key
    name = where.asset_key.to_user_string()
    return f"{name}[{where.partition_key}] {cause.reason}" if where.partition_key \
        else f"{name} {cause.reason}"
