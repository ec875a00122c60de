"""The source files, watched: new run folders become partitions, and every new or changed run
folder (and allowlist) is recorded as an observation whose data version is a cheap signature
of its files. Raw events depend on those observations, so a changed run shows as stale and the
automation re-reads it; what it rewrites downstream depends on whether the content changed."""

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from lo2_dagster.defs.ingest.assets import run_folder_metadata
from lo2_dagster.defs.keys import FP_ALLOWLIST, RUN_LOGS
from lo2_dagster.defs.resources import FpAllowlistFile, Lo2Root
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.lib.layout import LayoutError
from lo2_dagster.versions import DATA_VERSION_TAG, partition_data_versions

SENSOR_NAME = "lo2_source_files"


#: A run folder whose folders have not changed for this long when it was last read file by
#: file is settled: the sensor then reads only its folders' times until they change.
SETTLED_SECONDS = 600
#: Seconds of file-by-file reading per sensor tick (Dagster stops a sensor after 60 s): runs
#: left over are read at the next ticks, and new ones become partitions once read.
TICK_BUDGET_SECONDS = 20.0


@dataclass
class Observed:
    """What ``run_observations`` found: observations of new or changed runs, every run's
    signature, the sensor's folder record, and the runs left for the next tick."""

    observations: list[dg.AssetObservation]
    signatures: dict[str, str]
    folders: dict[str, list] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)


def run_observations(root: Lo2Root, runs: list[str], known: dict[str, str],
                     folders: dict[str, list] | None = None,
                     budget_seconds: float | None = None) -> Observed:
    """Observations of the runs whose signature differs from ``known`` (run -> signature),
    every run's current signature, and (with ``folders``, the sensor's record of each run's
    folder signature and when its files were last read) the new record.

    Without ``folders`` every run's files are stat'ed (``lo2-dagster run``, the UI's Observe).
    With it, a settled run (its folders unchanged since a file-by-file read made at least
    ``SETTLED_SECONDS`` after they last changed) keeps its signature without reading its files:
    a tick over 1,740 runs stats their folders, not their 657 k files. A file rewritten in place
    in a settled run is then seen by `lo2-dagster run` or Observe, not by the sensor.

    Past ``budget_seconds`` of reading, the runs still to read are ``deferred`` (their known
    signature and record are kept), so that a tick over thousands of new runs ends in time.

    A run that cannot be read is observed too, with the problem as its signature: the
    automation then runs its raw events, which fail naming the problem and the fix (and run
    again once the folder changes)."""
    observations, signatures, record, deferred = [], {}, {}, []
    now, read = time.time(), 0
    for run in runs:
        if budget_seconds is not None and read and time.time() - now > budget_seconds:
            deferred.append(run)
            if run in known:
                signatures[run] = known[run]
            if folders is not None and run in folders:
                record[run] = folders[run]
            continue
        try:
            if folders is not None:
                folder, newest = root.folder_signature(run)
                previous = folders.get(run)
                if previous and previous[0] == folder and previous[1] - newest >= \
                        SETTLED_SECONDS and run in known:
                    signatures[run], record[run] = known[run], previous
                    continue
                record[run] = [folder, now]
            read += 1  # at least one run is read per tick, whatever the budget
            signature = root.signature(run)
            metadata = run_folder_metadata(root, run)
        except (LayoutError, OSError) as e:
            problem = str(e)
            signature = "unreadable-" + hashlib.sha256(problem.encode()).hexdigest()[:16]
            metadata = {"problem": dg.MetadataValue.text(problem)}
        signatures[run] = signature
        if known.get(run) != signature:
            observations.append(dg.AssetObservation(
                asset_key=RUN_LOGS, partition=run, tags={DATA_VERSION_TAG: signature},
                metadata=metadata))
    return Observed(observations, signatures, record, deferred)


def allowlist_observation(instance: dg.DagsterInstance, allowlist_file: FpAllowlistFile,
                          warn: Callable[[str], object]) -> dg.AssetObservation | None:
    """An observation of the FP allowlist if its content differs from the last one recorded.
    An invalid file is not observed (``warn`` says why); the enhanced tables fail on it, naming
    the file and the fix."""
    try:
        allowlist = allowlist_file.load()
    except dg.Failure as e:
        warn(f"lo2/fp_allowlist not observed: {e.description}")
        return None
    record = instance.get_latest_data_version_record(FP_ALLOWLIST)
    observed = record.asset_observation if record is not None else None
    if observed is not None and observed.tags.get(DATA_VERSION_TAG) == allowlist.digest:
        return None
    return dg.AssetObservation(asset_key=FP_ALLOWLIST, tags={DATA_VERSION_TAG: allowlist.digest},
                               metadata=allowlist_file.metadata(allowlist))


def observe_sources(instance: dg.DagsterInstance, root: Lo2Root, allowlist_file: FpAllowlistFile,
                    runs: list[str], warn: Callable[[str], object] = print
                    ) -> list[dg.AssetObservation]:
    """Record what changed in the source files since Dagster last observed them (`lo2-dagster run`'s
    way; the sensor keeps the signatures in its cursor instead of querying)."""
    known = partition_data_versions(instance, RUN_LOGS, runs, observed=True)
    observations = run_observations(root, runs, known).observations
    allowlist = allowlist_observation(instance, allowlist_file, warn)
    events = [*observations, *([allowlist] if allowlist else [])]
    for event in events:
        instance.report_runless_asset_event(event)
    return events


@dg.sensor(
    name=SENSOR_NAME,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description=(
        "Watches the LO2 root and the FP allowlist: adds a partition for each new run folder "
        "that holds logs, and records an observation of lo2/run_logs for each new or changed "
        "run (and of lo2/fp_allowlist when it was edited). The automation sensor does the rest. "
        "A partition deleted by hand is not re-added."
    ),
)
def lo2_source_files(context: dg.SensorEvaluationContext, lo2_root: Lo2Root,
                     fp_allowlist: FpAllowlistFile) -> dg.SensorResult:
    try:
        found, skipped, other = lo2_root.scan()
    except LayoutError as e:
        return dg.SensorResult(skip_reason=str(e))
    for reason in skipped:
        context.log.warning(f"Skipped run folder {reason}")
    state = json.loads(context.cursor) if context.cursor else {}
    seen, known = set(state.get("seen", [])), dict(state.get("signatures", {}))
    folders = dict(state.get("folders", {}))
    existing = set(context.instance.get_dynamic_partitions(RUNS.name))
    candidates = [run for run in found if run not in seen and run not in existing]
    # A folder still being created or copied has no logs yet: not seen until it has some.
    new = [run for run in candidates if lo2_root.has_logs(run)]
    waiting = sorted(set(candidates) - set(new))
    # The runs read longest ago first (new ones: never): past the tick's budget, what is left
    # waits for the next tick, and every run gets its turn.
    watched = sorted((existing & set(found)) | set(new),
                     key=lambda run: (folders.get(run, [None, 0.0])[1], run))
    observed = run_observations(lo2_root, watched, known, folders, TICK_BUDGET_SECONDS)
    later = set(observed.deferred)
    new = [run for run in new if run not in later]
    if later:
        context.log.info(f"{len(later)} run folders left for the next tick (this one read "
                         f"files for {TICK_BUDGET_SECONDS:.0f} s)")
    allowlist = allowlist_observation(context.instance, fp_allowlist, context.log.warning)
    events = [*observed.observations, *([allowlist] if allowlist else [])]
    cursor = json.dumps({"seen": sorted(seen | (set(found) - set(waiting) - later)),
                         "signatures": observed.signatures, "folders": observed.folders},
                        sort_keys=True)
    if new:
        context.log.info(f"{len(new)} new run(s): {', '.join(new[:5])}"
                         f"{' ...' if len(new) > 5 else ''}")
    if not events and not new:
        without = sorted({*waiting, *other})
        note = (f"; folders without logs (being copied, or not runs, such as LO2 v2's pre-run "
                f"results): {', '.join(without)}" if without else "")
        return dg.SensorResult(
            skip_reason=f"No new or changed run folders under {lo2_root.resolve()} "
                        f"({len(found)} known){note}",
            cursor=cursor)
    return dg.SensorResult(
        asset_events=events,
        dynamic_partitions_requests=[RUNS.build_add_request(new)] if new else [],
        cursor=cursor,
    )
