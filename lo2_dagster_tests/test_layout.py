"""Discovery of runs and files: both layouts, unknown entries, missing files, bad folders."""

from __future__ import annotations

import pytest

from lo2_dagster.lib import names
from lo2_dagster.lib.layout import LayoutError, has_logs, logs_dir, run_files, scan_runs
from lo2_dagster_tests.conftest import RUN


def test_names_match_the_dataset():
    assert len(names.TEST_CASES) == 54 and names.TEST_CASES[0] == "correct"
    assert len(set(names.TEST_CASES)) == 54
    assert names.service_file_name("refresh-token") == "light-oauth2-oauth2-refresh-token-1.log"
    assert names.service_of_file("light-oauth2-oauth2-refresh-token-1.log") == "refresh-token"
    assert names.service_of_file("light-oauth2-oauth2-mysql-1.log") is None
    assert names.run_epoch(RUN) == 1719592986 and names.run_epoch("other") is None
    assert names.run_start(RUN).isoformat() == "2024-06-28T16:43:06"
    assert names.run_start("light-oauth2-data-1719592986000000") is None  # out of range
    assert names.seq_id(RUN, "correct", "token") == f"{RUN}__correct__token"


@pytest.mark.parametrize("key", ["", " run", "a/b", "a\\b", "a,b", "..", "x..y", ".hidden"])
def test_bad_run_keys_are_refused_with_the_fix(key):
    with pytest.raises(names.InvalidRunKey, match=r"Invalid run partition key.*rename the folder"):
        names.validate_run_key(key)


def test_good_run_key_passes():
    assert names.validate_run_key(RUN) == RUN
    assert names.validate_run_key("my-run_2") == "my-run_2"


def test_both_layouts_are_accepted(write_run, tmp_path):
    nested = write_run({("correct", "token"): "x"})
    assert logs_dir(nested) == nested / "logs"
    assert scan_runs(nested) == ([RUN], [], [])
    assert scan_runs(nested / "logs") == ([RUN], [], [])


def test_discovery_skips_non_runs(write_run):
    root = write_run({("correct", "token"): "x"})
    logs = root / "logs"
    (logs / "prerun results").mkdir()  # no test-case folders with logs: not a run
    (logs / "notes.txt").write_text("hello")
    (logs / "bad,name").mkdir()
    (logs / "bad,name" / "correct").mkdir()
    (logs / "bad,name" / "correct" / "a.log").write_text("x")
    (logs / "light-oauth2-data-2").mkdir()  # named like a run, but no logs (yet): not a run
    runs, skipped, other = scan_runs(root)
    assert runs == [RUN]
    assert len(skipped) == 1 and "bad,name" in skipped[0] and "comma" in skipped[0]
    assert other == ["light-oauth2-data-2", "prerun results"]


def test_lo2_v2_names_date_runs_and_pre_run_results_are_not_runs(write_run):
    v2 = "oauth2_logs_LO2_run_1739430001"
    root = write_run({("correct", "token"): "x"}, run=v2)
    pre = root / "logs" / "oauth2_logs_LO2_run_pre"  # named like a run; results, no logs
    (pre / "results").mkdir(parents=True)
    (pre / "results" / "summary.json").write_text("{}")
    assert scan_runs(root) == ([v2], [], ["oauth2_logs_LO2_run_pre"])
    assert names.run_start(v2).isoformat() == "2025-02-13T07:00:01"
    assert names.run_name(1739430001, "v2") == v2


def test_metrics_are_recognised_not_ignored(write_run):
    root = write_run({("correct", "token"): "x", ("get_token_404", "token"): "y"})
    run_dir = root / "logs" / RUN
    (run_dir / "correct" / "metrics").mkdir()
    (run_dir / "correct" / "metrics" / "cpu.json").write_text("{}")
    (root / "metrics").mkdir()
    (root / "metrics" / f"{RUN}.csv").write_text("timestamp,test_name\n")
    rf = run_files(root, RUN, list_metrics=True)
    assert rf.ignored == []
    assert rf.metrics == ["correct/metrics/cpu.json", f"metrics/{RUN}.csv"]
    assert run_files(root, RUN).metrics == []  # the sensor's signatures do not list them
    # Pointed at the logs folder itself, the CSV beside it is still found.
    assert run_files(root / "logs", RUN, list_metrics=True).metrics[-1] == f"metrics/{RUN}.csv"


def test_symlinks_out_of_the_root_are_not_followed(write_run, tmp_path):
    root = write_run({("correct", "token"): "x"})
    outside = tmp_path / "elsewhere"
    (outside / "correct").mkdir(parents=True)
    (outside / "correct" / names.service_file_name("code")).write_text("secret")
    case = root / "logs" / RUN / "correct"
    (case / names.service_file_name("user")).symlink_to(outside / "correct" /
                                                         names.service_file_name("code"))
    (case / names.service_file_name("key")).symlink_to(case / names.service_file_name("token"))
    (root / "logs" / "light-oauth2-data-2").symlink_to(outside)
    rf = run_files(root, RUN)
    assert [f.service for f in rf.files] == ["key", "token"]  # a link inside the root is fine
    assert rf.outside_root == [f"correct/{names.service_file_name('user')} -> "
                               f"{outside / 'correct' / names.service_file_name('code')}"]
    assert "correct/light-oauth2-oauth2-user-1.log" not in rf.missing
    scan = scan_runs(root)
    assert scan.runs == [RUN] and "LO2_FOLLOW_SYMLINKS" in scan.skipped[0]
    with pytest.raises(LayoutError, match="outside the LO2 root"):
        run_files(root, "light-oauth2-data-2")
    # A link loop is not followed either (and is no traceback).
    (case / names.service_file_name("client")).symlink_to(case / "loop")
    (case / "loop").symlink_to(case / names.service_file_name("client"))
    assert len(run_files(root, RUN).outside_root) == 3
    # The opt-in follows them.
    assert scan_runs(root, follow_symlinks=True).runs == [RUN, "light-oauth2-data-2"]
    assert [f.service for f in run_files(root, RUN, follow_symlinks=True).files] == [
        "key", "token", "user"]  # (the loop is no file: not a service log)


def test_has_logs_tells_a_run_being_copied(write_run):
    root = write_run({("correct", "token"): "x"})
    (root / "logs" / "light-oauth2-data-2" / "correct").mkdir(parents=True)
    assert has_logs(root, RUN)
    assert not has_logs(root, "light-oauth2-data-2")


def test_run_files_reports_unknown_and_missing(write_run):
    root = write_run({("correct", "token"): "x", ("correct", "code"): "y",
                      ("get_token_404", "token"): "z"})
    run_dir = root / "logs" / RUN
    (run_dir / "correct" / "metrics").mkdir()  # part of LO2: metrics, not unknown
    (run_dir / "correct" / "notes.md").write_text("?")
    (run_dir / "correct" / "light-oauth2-oauth2-token-2.log").write_text("replica 2?")
    (run_dir / "not_a_test_case").mkdir()
    (run_dir / "README").write_text("?")
    rf = run_files(root, RUN)
    assert [(f.test_case, f.service) for f in rf.files] == [
        ("correct", "code"), ("correct", "token"), ("get_token_404", "token")]
    assert rf.ignored == ["README", "correct/light-oauth2-oauth2-token-2.log",
                          "correct/notes.md", "not_a_test_case/"]
    assert len(rf.missing) == 5 + 6
    assert "correct/light-oauth2-oauth2-user-1.log" in rf.missing
    assert len(rf.missing_test_cases) == 52


def test_run_without_test_cases_fails_naming_the_folder(write_run):
    root = write_run({("correct", "token"): "x"})
    empty = root / "logs" / "light-oauth2-data-2"
    (empty / "junk").mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"light-oauth2-data-2 has no test-case folders"):
        run_files(root, "light-oauth2-data-2")


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(LayoutError, match=r"does not exist.*LO2_ROOT"):
        scan_runs(tmp_path / "nowhere")
