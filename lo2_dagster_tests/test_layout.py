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
    assert scan_runs(nested) == ([RUN], [])
    assert scan_runs(nested / "logs") == ([RUN], [])


def test_discovery_skips_non_runs(write_run):
    root = write_run({("correct", "token"): "x"})
    logs = root / "logs"
    (logs / "prerun results").mkdir()  # no test-case folders with logs: not a run
    (logs / "notes.txt").write_text("hello")
    (logs / "bad,name").mkdir()
    (logs / "bad,name" / "correct").mkdir()
    (logs / "bad,name" / "correct" / "a.log").write_text("x")
    (logs / "light-oauth2-data-2").mkdir()  # named like a run: a run (even if empty)
    runs, skipped = scan_runs(root)
    assert runs == [RUN, "light-oauth2-data-2"]
    assert len(skipped) == 1 and "bad,name" in skipped[0] and "comma" in skipped[0]


def test_has_logs_tells_a_run_being_copied(write_run):
    root = write_run({("correct", "token"): "x"})
    (root / "logs" / "light-oauth2-data-2" / "correct").mkdir(parents=True)
    assert has_logs(root, RUN)
    assert not has_logs(root, "light-oauth2-data-2")


def test_run_files_reports_unknown_and_missing(write_run):
    root = write_run({("correct", "token"): "x", ("correct", "code"): "y",
                      ("get_token_404", "token"): "z"})
    run_dir = root / "logs" / RUN
    (run_dir / "correct" / "metrics").mkdir()  # part of LO2: silently ignored
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
