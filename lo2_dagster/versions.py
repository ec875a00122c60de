"""What Dagster records about versions, read and kept through its public API: data versions
(the training-set fingerprint) and the cursors of the automation conditions evaluated outside
the daemon (``lo2-dagster run`` and the catch-up schedule)."""

import datetime
import hashlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg

#: The tag under which Dagster records a materialization's or observation's data version
#: (the ``dagster/data_version`` of ``dg.DataVersion``, as the UI shows it).
DATA_VERSION_TAG = "dagster/data_version"

__all__ = ["DATA_VERSION_TAG", "evaluate_conditions", "fingerprint_of", "load_cursor",
           "partition_data_versions", "save_cursor"]


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


def load_cursor(instance: dg.DagsterInstance, name: str) -> Any:
    """The automation cursor saved under ``name`` in the instance's storage (with the runs, so
    that it follows the instance to PostgreSQL), or ``None`` before the first evaluation."""
    text = instance.run_storage.get_cursor_values({name}).get(name)
    return dg.deserialize_value(text) if text else None


def save_cursor(instance: dg.DagsterInstance, name: str, cursor: Any) -> None:
    """Keep an automation cursor (``EvaluateAutomationConditionsResult.cursor``) for the next
    evaluation under ``name``."""
    instance.run_storage.set_cursor_values({name: dg.serialize_value(cursor)})


def evaluate_conditions(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: Any,
                        evaluation_time: datetime.datetime | None = None
                        ) -> dg.EvaluateAutomationConditionsResult:
    """One evaluation of the assets' automation conditions, as a daemon tick makes it, against
    ``instance`` (each run partition read once; without Dagster's beta notes)."""
    with warnings.catch_warnings(), partitions_read_once(instance):
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                                 evaluation_time=evaluation_time)


@contextmanager
def partitions_read_once(instance: dg.DagsterInstance) -> Iterator[None]:
    """Within the block, ``instance`` reads each dynamic partitions definition's keys once.

    Evaluating the conditions asks the instance for the run partitions about 600 times (to
    write each condition's result into the cursor as key ranges), each a query, and on SQLite
    a new connection: 2.5 s of a 2.7 s evaluation with two runs. Nothing adds partitions while
    conditions are evaluated, so one answer serves them all.
    """
    read = instance.get_dynamic_partitions
    own = vars(instance).get("get_dynamic_partitions")  # set on the instance itself, if so
    known: dict[str, Sequence[str]] = {}

    def get_dynamic_partitions(partitions_def_name: str) -> Sequence[str]:
        if partitions_def_name not in known:
            known[partitions_def_name] = read(partitions_def_name)
        return known[partitions_def_name]

    instance.get_dynamic_partitions = get_dynamic_partitions  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is None:
            del instance.get_dynamic_partitions
        else:
            instance.get_dynamic_partitions = own  # type: ignore[method-assign]
