"""The discovery sensor: new run folders become partitions and ingest requests, once."""

import dagster as dg

from lo2_dagster.definitions import defs
from lo2_dagster.defs.ingest.jobs import INGEST_JOB_NAME
from lo2_dagster.defs.ingest.partitions import RUNS
from lo2_dagster.defs.ingest.sensors import SENSOR_NAME, ingest_run_key, lo2_new_runs
from lo2_dagster.defs.resources import Lo2Root
from lo2_dagster_tests.conftest import RUN

RUN_2 = "light-oauth2-data-1719610000"
RUN_3 = "light-oauth2-data-1719620000"


def evaluate(instance, root, cursor=None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"lo2_root": Lo2Root(path=str(root))})
    return lo2_new_runs(context)


def apply(instance, result: dg.SensorResult) -> None:
    """What the daemon does with a result: add the requested partitions."""
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_new_runs_become_partitions_and_requests_once(write_run):
    root = write_run({("correct", "token"): "x"})
    write_run({("correct", "token"): "x"}, run=RUN_2)
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root)
        assert [r.partition_key for r in first.run_requests] == [RUN, RUN_2]
        assert [r.run_key for r in first.run_requests] == [ingest_run_key(RUN),
                                                           ingest_run_key(RUN_2)]
        [add] = first.dynamic_partitions_requests
        assert (add.partitions_def_name, list(add.partition_keys)) == (RUNS.name, [RUN, RUN_2])
        apply(instance, first)

        # Nothing new: nothing requested, whether or not the cursor is kept.
        again = evaluate(instance, root, first.cursor)
        assert not again.run_requests and not again.dynamic_partitions_requests
        assert "No new run folders" in again.skip_reason.skip_message
        assert not evaluate(instance, root).run_requests  # partitions alone suffice

        # A third run arrives: only it is requested.
        write_run({("correct", "token"): "x"}, run=RUN_3)
        third = evaluate(instance, root, again.cursor)
        assert [r.partition_key for r in third.run_requests] == [RUN_3]
        assert list(third.dynamic_partitions_requests[0].partition_keys) == [RUN_3]


def test_partition_deleted_by_hand_is_not_readded(write_run):
    root = write_run({("correct", "token"): "x"})
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root)
        apply(instance, first)
        instance.delete_dynamic_partition(RUNS.name, RUN)
        assert not evaluate(instance, root, first.cursor).run_requests


def test_run_being_copied_waits_until_it_has_logs(write_run):
    root = write_run({("correct", "token"): "x"})
    (root / "logs" / RUN_2 / "correct").mkdir(parents=True)  # created, nothing copied yet
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(instance, root)
        assert [r.partition_key for r in first.run_requests] == [RUN]
        apply(instance, first)
        waiting = evaluate(instance, root, first.cursor)
        assert not waiting.run_requests and f"waiting for logs in {RUN_2}" in \
            waiting.skip_reason.skip_message
        write_run({("correct", "token"): "x"}, run=RUN_2)  # the copy has arrived
        ready = evaluate(instance, root, waiting.cursor)
        assert [r.partition_key for r in ready.run_requests] == [RUN_2]


def test_missing_root_skips_with_the_reason(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        result = evaluate(instance, tmp_path / "nowhere")
    assert not result.run_requests
    assert "does not exist" in result.skip_reason.skip_message


def test_sensor_runs_by_default_and_targets_the_ingest_job():
    sensor = defs().resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == INGEST_JOB_NAME
