"""Which Drain templates each run's enhanced tables were built with, read from Dagster's event
log: shared by the domains that read enhanced tables (the model, the predictions, the exports),
which must not mix runs whose template ids come from different trainings."""

from collections.abc import Mapping, Sequence

import dagster as dg

from lo2_dagster.defs.keys import DRAIN_TEMPLATES
from lo2_dagster.versions import DATA_VERSION_TAG

#: The metadata entry of an enhanced table's partition naming the templates it was built with.
TEMPLATES_DIGEST = "drain_templates_digest"


def templates_used(context: dg.AssetExecutionContext, key: dg.AssetKey,
                   run: str) -> str | None:
    """The templates' digest a partition of an enhanced table was built with: ``""`` when its
    latest materialization does not say, None when it has none."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[run]), limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    used = records[0].asset_materialization.metadata.get(TEMPLATES_DIGEST)
    return str(used.value) if used is not None else ""


def current_templates(context: dg.AssetExecutionContext,
                      partitions: Mapping[dg.AssetKey, Sequence[str]]) -> str | None:
    """The current Drain templates' digest, after refusing to mix runs whose Drain ids come
    from another training of the templates (ids are renumbered when the templates are retrained
    on other runs): every given partition must record that digest. None: no templates yet."""
    current = context.instance.get_latest_materialization_event(DRAIN_TEMPLATES)
    if current is None or current.asset_materialization is None:
        return None
    want = current.asset_materialization.tags.get(DATA_VERSION_TAG)  # = the digest
    outdated = [f"{key.to_user_string()}[{run}]" for key, runs in partitions.items()
                for run in runs if templates_used(context, key, run) not in (want, None)]
    if outdated:
        raise dg.Failure(description=(
            f"{len(outdated)} partitions were built with other Drain templates than the current "
            f"ones (template ids differ), e.g. {', '.join(outdated[:5])}. Re-materialize "
            "lo2/events_enhanced and lo2/sequences_enhanced for those runs (they show as stale), "
            "or run `lo2-dagster run` (it rebuilds what the new templates change)."))
    return want
