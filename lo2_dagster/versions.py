"""What Dagster records about versions, read and kept through its public API: data versions
(the training-set fingerprint) and the cursors of the automation conditions evaluated outside
the daemon (``lo2-dagster run`` and the catch-up schedule)."""

import datetime
import hashlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
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
    """Within the block, ``instance`` reads each dynamic partitions definition's keys once and
    answers "is this a partition" from that read.

    Evaluating the conditions asks the instance for the run partitions about 600 times (to
    write each condition's result into the cursor as key ranges), and a Dagster run asks
    whether its partition exists ~40 times (its steps' contexts, its metadata): each a query,
    and on SQLite a new connection (2-10 ms). Partitions added or deleted through ``instance``
    in the block are applied to what it read; a key it does not know is looked up again (added
    by another process meanwhile). Nested blocks share the outer block's reads.
    """
    if getattr(vars(instance).get("get_dynamic_partitions"), "_lo2_read_once", False):
        yield  # an outer block reads for this one
        return
    read, has, add, delete = (instance.get_dynamic_partitions, instance.has_dynamic_partition,
                              instance.add_dynamic_partitions, instance.delete_dynamic_partition)
    known: dict[str, tuple[list[str], frozenset[str]]] = {}  # name -> keys, in order and as a set

    def keys(partitions_def_name: str) -> tuple[list[str], frozenset[str]]:
        if partitions_def_name not in known:
            read_keys = list(read(partitions_def_name))
            known[partitions_def_name] = read_keys, frozenset(read_keys)
        return known[partitions_def_name]

    def get_dynamic_partitions(partitions_def_name: str) -> Sequence[str]:
        return keys(partitions_def_name)[0]

    def has_dynamic_partition(partitions_def_name: str, partition_key: str) -> bool:
        if partition_key in keys(partitions_def_name)[1]:
            return True
        if not has(partitions_def_name, partition_key):
            return False
        known.pop(partitions_def_name, None)  # added elsewhere since: read again next time
        return True

    def get_existing_dynamic_partitions(partitions_def_name: str,
                                        partition_keys: Sequence[str]) -> AbstractSet[str]:
        return {k for k in partition_keys if has_dynamic_partition(partitions_def_name, k)}

    def add_dynamic_partitions(partitions_def_name: str, partition_keys: Sequence[str]) -> None:
        add(partitions_def_name, partition_keys)
        known.pop(partitions_def_name, None)

    def delete_dynamic_partition(partitions_def_name: str, partition_key: str) -> None:
        delete(partitions_def_name, partition_key)
        known.pop(partitions_def_name, None)

    get_dynamic_partitions._lo2_read_once = True  # type: ignore[attr-defined]
    replacements = {f.__name__: f for f in (
        get_dynamic_partitions, has_dynamic_partition, get_existing_dynamic_partitions,
        add_dynamic_partitions, delete_dynamic_partition)}
    own = {name: vars(instance)[name] for name in replacements if name in vars(instance)}
    for name, function in replacements.items():
        setattr(instance, name, function)
    try:
        yield
    finally:
        for name in replacements:
            if name in own:
                setattr(instance, name, own[name])
            else:
                delattr(instance, name)
