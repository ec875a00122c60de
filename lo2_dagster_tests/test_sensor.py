"""The source-files sensor: new run folders become partitions; new and changed run folders and
allowlist edits become observations (whose data versions drive staleness and automation)."""

import os

import dagster as dg

from lo2_dagster.definitions import defs
from lo2_dagster.defs.ingest.sensors import SENSOR_NAME, lo2_source_files, observe_sources
from lo2_dagster.defs.keys import FP_ALLOWLIST, RUN_LOGS
from lo2_dagster.defs.resources import FpAllowlistFile, Lo2Root
from lo2_dagster.defs.runs import RUNS
from lo2_dagster_tests.conftest import RUN

RUN_2 = "light-oauth2-data-1719610000"
RUN_3 = "light-oauth2-data-1719620000"


def evaluate(instance, root, cursor=None, allowlist=None) -> dg.SensorResult:
    allowlist = allowlist or root / "fp_allowlist.toml"
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={
            "lo2_root": Lo2Root(path=str(root)),
            "fp_allowlist": FpAllowlistFile(path=str(allowlist))}) as context:
        return lo2_source_files(context)


def apply(instance, result: dg.SensorResult) -> None:
    """What the daemon does with a result: record the events, add the partitions."""
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def observed(result: dg.SensorResult) -> list[tuple[str, str | None]]:
    return [(e.asset_key.to_user_string(), e.partition) for e in result.asset_events or []]


def test_new_runs_become_partitions_and_observations_once(write_run):
    root = write_run({("correct", "token"): "x"})
    write_run({("correct", "token"): "x"}, run=RUN_2)
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root)
        assert not first.run_requests  # the automation sensor materializes; this one observes
        [add] = first.dynamic_partitions_requests
        assert (add.partitions_def_name, list(add.partition_keys)) == (RUNS.name, [RUN, RUN_2])
        assert observed(first) == [("lo2/run_logs", RUN), ("lo2/run_logs", RUN_2),
                                   ("lo2/fp_allowlist", None)]
        versions = {e.partition: e.tags["dagster/data_version"] for e in first.asset_events}
        assert len(set(versions.values())) == 3  # each run its own signature
        apply(instance, first)

        # Nothing new or changed: a skip, with or without the cursor (the partitions exist).
        again = evaluate(instance, root, first.cursor)
        assert not again.asset_events and not again.dynamic_partitions_requests
        assert "No new or changed run folders" in again.skip_reason.skip_message

        # One file of one run rewritten: only that run is observed again, with a new version.
        log = next((root / "logs" / RUN_2 / "correct").iterdir())
        log.write_text("y")
        changed = evaluate(instance, root, again.cursor)
        assert observed(changed) == [("lo2/run_logs", RUN_2)]
        assert changed.asset_events[0].tags["dagster/data_version"] != versions[RUN_2]
        assert not changed.dynamic_partitions_requests

        # A third run arrives: only it is added and observed.
        write_run({("correct", "token"): "x"}, run=RUN_3)
        third = evaluate(instance, root, changed.cursor)
        assert list(third.dynamic_partitions_requests[0].partition_keys) == [RUN_3]
        assert observed(third) == [("lo2/run_logs", RUN_3)]


def test_an_allowlist_edit_is_observed_once(write_run, tmp_path):
    root = write_run({("correct", "token"): "x"})
    allowlist = tmp_path / "allow.toml"
    allowlist.write_text("")
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root, allowlist=allowlist)
        apply(instance, first)
        assert ("lo2/fp_allowlist", None) in observed(first)
        assert not evaluate(instance, root, first.cursor, allowlist).asset_events
        allowlist.write_text('[[event]]\nname = "x"\nmessage = "y"\nreason = "z"\n')
        edited = evaluate(instance, root, first.cursor, allowlist)
        assert observed(edited) == [("lo2/fp_allowlist", None)]
        apply(instance, edited)
        record = instance.get_latest_data_version_record(FP_ALLOWLIST)
        assert record.asset_observation.tags["dagster/data_version"] == \
            edited.asset_events[0].tags["dagster/data_version"]


def test_touching_a_file_changes_the_signature_not_the_partitions(write_run):
    root = write_run({("correct", "token"): "x"})
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root)
        apply(instance, first)
        log = next((root / "logs" / RUN / "correct").iterdir())
        stat = log.stat()
        os.utime(log, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        touched = evaluate(instance, root, first.cursor)
        assert observed(touched) == [("lo2/run_logs", RUN)]
        apply(instance, touched)
        versions = [r.asset_observation.tags["dagster/data_version"] for r in
                    instance.fetch_observations(dg.AssetRecordsFilter(
                        asset_key=RUN_LOGS, asset_partitions=[RUN]), limit=10).records]
        assert len(versions) == 2 and versions[0] != versions[1]


def test_partition_deleted_by_hand_is_not_readded(write_run):
    root = write_run({("correct", "token"): "x"})
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root)
        apply(instance, first)
        instance.delete_dynamic_partition(RUNS.name, RUN)
        again = evaluate(instance, root, first.cursor)
        assert not again.dynamic_partitions_requests and not again.asset_events


def test_run_being_copied_waits_until_it_has_logs(write_run):
    root = write_run({("correct", "token"): "x"})
    (root / "logs" / RUN_2 / "correct").mkdir(parents=True)  # created, nothing copied yet
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root)
        assert list(first.dynamic_partitions_requests[0].partition_keys) == [RUN]
        apply(instance, first)
        waiting = evaluate(instance, root, first.cursor)
        assert not waiting.dynamic_partitions_requests
        assert f"folders without logs (being copied, or not runs, such as LO2 v2's pre-run " \
               f"results): {RUN_2}" in waiting.skip_reason.skip_message
        write_run({("correct", "token"): "x"}, run=RUN_2)  # the copy has arrived
        ready = evaluate(instance, root, waiting.cursor)
        assert list(ready.dynamic_partitions_requests[0].partition_keys) == [RUN_2]


def test_missing_root_skips_with_the_reason(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        result = evaluate(instance, tmp_path / "nowhere")
    assert not result.dynamic_partitions_requests
    assert "does not exist" in result.skip_reason.skip_message


def test_both_sensors_run_by_default():
    definitions = defs()
    assert definitions.resolve_sensor_def(SENSOR_NAME).default_status == \
        dg.DefaultSensorStatus.RUNNING
    automation = definitions.resolve_sensor_def("lo2_automation")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    assert isinstance(automation, dg.AutomationConditionSensorDefinition)


def test_an_invalid_allowlist_is_not_observed_and_runs_still_are(write_run, tmp_path):
    root = write_run({("correct", "token"): "x"})
    allowlist = tmp_path / "allow.toml"
    allowlist.write_text("[event]\nmessage = 'x'\n")  # a table, not [[event]]: invalid
    with dg.DagsterInstance.ephemeral() as instance:
        result = evaluate(instance, root, allowlist=allowlist)
        assert observed(result) == [("lo2/run_logs", RUN)]
        assert list(result.dynamic_partitions_requests[0].partition_keys) == [RUN]
        warnings: list[str] = []
        observe_sources(instance, Lo2Root(path=str(root)),
                        FpAllowlistFile(path=str(allowlist)), [RUN], warn=warnings.append)
        [warning] = warnings
        assert warning.startswith("lo2/fp_allowlist not observed:") and str(allowlist) in warning


def test_observing_a_run_in_the_ui_gives_the_sensors_signature(write_run, monkeypatch):
    root = write_run({("correct", "token"): "x"})
    monkeypatch.setenv("LO2_ROOT", str(root))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(RUNS.name, [RUN])
        job = defs().resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, asset_selection=[RUN_LOGS],
                                        partition_key=RUN)
        assert result.success
        [event] = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        observation = event.event_specific_data.asset_observation
        sensed = evaluate(instance, root)
        assert observation.partition == RUN
        assert observation.tags["dagster/data_version"] == \
            sensed.asset_events[0].tags["dagster/data_version"]


def test_a_settled_run_costs_its_folders_not_its_files(write_run, monkeypatch):
    """A run whose folders have not changed for SETTLED_SECONDS is not read file by file on
    each tick; a new file (its folder changes) is seen; `lo2-dagster run` reads every file."""
    import time

    from lo2_dagster.defs.ingest import sensors
    from lo2_dagster.lib import layout

    root = write_run({("correct", "token"): "x"})
    run_dir = root / "logs" / RUN
    old = time.time() - 2 * sensors.SETTLED_SECONDS

    def age_folders() -> None:
        for folder in (run_dir, *[d for d in run_dir.iterdir() if d.is_dir()]):
            os.utime(folder, (old, old))

    age_folders()
    reads: list[str] = []
    real = layout.run_signature
    monkeypatch.setattr("lo2_dagster.defs.resources.run_signature",
                        lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root)
        apply(instance, first)
        assert reads == [RUN]
        # A file rewritten in place, its folder's time kept: the sensor does not read the run.
        log = next((run_dir / "correct").iterdir())
        log.write_text(log.read_text() + "more\n")
        age_folders()
        quiet = evaluate(instance, root, first.cursor)
        assert reads == [RUN] and observed(quiet) == []
        # ... `lo2-dagster run`'s observation reads every file and sees it.
        assert [e.partition for e in observe_sources(
            instance, Lo2Root(path=str(root)), FpAllowlistFile(path=str(root / "x.toml")),
            [RUN])] == [RUN]
        assert reads == [RUN, RUN]
        # A new file changes its folder: the run is read again and observed.
        (run_dir / "correct" / "light-oauth2-oauth2-key-1.log").write_text("y\n")
        changed = evaluate(instance, root, quiet.cursor)
        assert reads == [RUN, RUN, RUN] and observed(changed) == [("lo2/run_logs", RUN)]


def test_a_tick_past_its_budget_leaves_runs_for_the_next(write_run, monkeypatch):
    """Thousands of new run folders: a tick reads what its time budget allows (at least one
    run) and the rest become partitions at the next ticks, none lost or read twice."""
    from lo2_dagster.defs.ingest import sensors

    root = write_run({("correct", "token"): "x"})
    write_run({("correct", "token"): "y"}, run=RUN_2)
    write_run({("correct", "token"): "z"}, run=RUN_3)
    monkeypatch.setattr(sensors, "TICK_BUDGET_SECONDS", 0.0)
    added, cursor = [], None
    with dg.DagsterInstance.ephemeral() as instance:
        for _ in range(3):
            result = evaluate(instance, root, cursor)
            apply(instance, result)
            cursor = result.cursor
            added.append([k for r in result.dynamic_partitions_requests or []
                          for k in r.partition_keys])
        assert added == [[RUN], [RUN_2], [RUN_3]]
        assert sorted(instance.get_dynamic_partitions(RUNS.name)) == sorted([RUN, RUN_2, RUN_3])
        quiet = evaluate(instance, root, cursor)
        assert not quiet.dynamic_partitions_requests and observed(quiet) == []
