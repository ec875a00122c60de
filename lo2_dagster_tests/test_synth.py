"""The synthetic LO2 generator: determinism, layout, line format, start-up, faults, time."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from lo2_dagster.lib.names import (
    CORRECT,
    ERROR_TEST_CASES,
    SERVICES,
    TEST_CASES,
    run_name,
    service_file_name,
)
from lo2_dagster.synth import (
    FAULTS,
    HARD_VALUES,
    PRE_RUN_FOLDER,
    TEST_CASE_METRICS,
    SynthConfig,
    SynthSummary,
    abbreviate,
    generate,
    missing_test_cases,
    plan_runs,
    shared_faults,
)

HEADER = re.compile(
    r"^\d{2}:\d{2}:\d{2}\.\d{3} \[[^\]]*\] +\S* +(DEBUG|INFO|WARN|ERROR) +\S+ +\S+ - "
)
TIMESTAMP = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) ")
REQUEST = re.compile(r"^\S+ \[XNIO-1 task-\d+\]  ([A-Za-z0-9_-]{22}) (DEBUG|INFO|WARN|ERROR) ")
BLANK_ID = re.compile(r"^\S+ \[(?!XNIO)[^\]]*\]   (DEBUG|INFO|WARN|ERROR) ")
RUN_NAME = re.compile(r"^light-oauth2-data-\d+$")
MIDNIGHT_EPOCH = 1719619140  # 2024-06-28 23:59:00 UTC
INIT = 100

# One sample for the read-only checks: big enough for stable shares, fast to write (< 1 s).
SAMPLE = SynthConfig(runs=2, seed=3, token_lines=300)


@dataclass
class Sample:
    """A generated dataset and its summary."""

    root: Path
    summary: SynthSummary

    def files(self) -> list[Path]:
        """All log files, sorted."""
        return sorted(self.root.glob("logs/*/*/*.log"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """The SAMPLE dataset, written once for the module."""
    root = tmp_path_factory.mktemp("synth")
    return Sample(root, generate(root, SAMPLE))


def lines_of(path: Path) -> list[str]:
    """Physical lines of a file (it must end with exactly one newline)."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and not text.endswith("\n\n"), path
    return text[:-1].split("\n")


def service_of(path: Path) -> str:
    """Short service name of a log file path."""
    return path.name[len("light-oauth2-oauth2-") : -len("-1.log")]


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tod_ms(line: str) -> int | None:
    """Time of day (ms) of a timestamped line, None for a continuation line."""
    m = TIMESTAMP.match(line)
    if m is None:
        return None
    hh, mm, ss, ms = (int(g) for g in m.groups())
    return ((hh * 60 + mm) * 60 + ss) * 1000 + ms


# --------------------------------------------------------------------------- determinism


def test_same_config_is_byte_identical_and_seed_matters(tmp_path: Path) -> None:
    config = SynthConfig(runs=1, seed=11, token_lines=40)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, config)
    generate(b, config)
    generate(b, config)  # writing over existing output changes nothing
    generate(c, SynthConfig(runs=1, seed=12, token_lines=40))
    da, db, dc = digests(a), digests(b), digests(c)
    assert len(da) == 54 * 7 + 1
    assert da == db
    common = set(da) & set(dc)  # same run name (start_epoch), other contents
    assert sum(da[k] != dc[k] for k in common) >= 0.9 * len(common)


#: The default generator's output, fixed: hard mode and new options must leave it byte for
#: byte as it was (sha256 over relative paths and contents, computed at commit 6da8e6a).
GOLDEN_DEFAULT = "68d7a213a9d0ba73015d54b69813524d807a4a8f7da106548d918eddb2bafdb7"


def test_the_default_output_is_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "lo2"
    generate(root, SynthConfig(runs=1, seed=0, token_lines=5))
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    assert h.hexdigest() == GOLDEN_DEFAULT


def test_file_content_does_not_depend_on_other_files_or_hash_seed(tmp_path: Path) -> None:
    one, two, sub = tmp_path / "one", tmp_path / "two", tmp_path / "sub"
    generate(one, SynthConfig(runs=1, seed=5, token_lines=20))
    generate(two, SynthConfig(runs=2, seed=5, token_lines=20))
    d1, d2 = digests(one), digests(two)
    assert all(d2[k] == v for k, v in d1.items())  # run 1 is unchanged by a second run
    code = (
        "import sys; from pathlib import Path; from lo2_dagster.synth import *; "
        "generate(Path(sys.argv[1]), SynthConfig(runs=1, seed=5, token_lines=20))"
    )
    env = {"PYTHONHASHSEED": "4242", "PATH": ""}
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code, str(sub)], check=True, env=env, cwd=root)
    assert digests(sub) == d1


# --------------------------------------------------------------------------- layout


def test_layout_run_names_and_metrics(sample: Sample) -> None:
    runs = sorted(p.name for p in (sample.root / "logs").iterdir())
    assert runs == sorted(sample.summary.runs)
    assert sample.summary.runs[0] == run_name(SAMPLE.start_epoch)
    assert all(RUN_NAME.match(r) for r in runs)
    assert len(set(runs)) == SAMPLE.runs
    expected = {service_file_name(s) for s in SERVICES}
    for run in runs:
        cases = {p.name for p in (sample.root / "logs" / run).iterdir()}
        assert cases == set(TEST_CASES)
        for case in cases:
            assert {p.name for p in (sample.root / "logs" / run / case).iterdir()} == expected
        with open(sample.root / "metrics" / f"{run}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert "test_name" in rows[0]
        assert any(c.startswith("node_") for c in rows[0])
        assert any(c.startswith("go_") for c in rows[0])
        assert {r["test_name"] for r in rows} == set(TEST_CASES)
        plan = next(p for p in plan_runs(SAMPLE) if p.name == run)
        assert abs(len(rows) - (plan.end_ms // 1000 - plan.epoch) / 10) <= 2
    summary = sample.summary
    assert summary.files == SAMPLE.runs * (54 * 7 + 1)
    assert summary.bytes == sum(p.stat().st_size for p in sample.root.rglob("*") if p.is_file())


def test_runs_are_hours_apart_and_test_cases_shuffled() -> None:
    plans = plan_runs(SynthConfig(runs=3, seed=1))
    assert plans[0].epoch == SynthConfig().start_epoch
    for before, after in pairwise(plans):
        assert 3 * 3600 <= after.epoch - before.end_ms // 1000 <= 5 * 3600
    orders = [tuple(w.test_case for w in p.windows) for p in plans]
    assert all(sorted(o) == sorted(TEST_CASES) for o in orders)
    assert len(set(orders)) == 3
    for plan in plans:
        assert plan.windows[0].start_ms == plan.epoch * 1000
        for w, nxt in pairwise(plan.windows):
            assert 20_000 <= w.end_ms - w.start_ms <= 180_000
            assert w.end_ms < nxt.start_ms


def test_every_error_case_has_a_fault() -> None:
    assert set(FAULTS) == set(ERROR_TEST_CASES)
    for fault in FAULTS.values():
        assert fault.primary in SERVICES
        assert set(fault.secondary) <= set(SERVICES) - {fault.primary}


# --------------------------------------------------------------------------- line format


def test_lines_follow_the_light4j_pattern(sample: Sample) -> None:
    requests = hazelcast = 0
    for path in sample.files():
        lines = lines_of(path)
        assert TIMESTAMP.match(lines[0]), path
        last = -1
        for line in lines:
            assert line.strip(), f"blank line in {path}"
            t = tod_ms(line)
            if t is None:  # continuation: stack trace or Hazelcast member list
                assert line.startswith(("\t", "com.", "Caused by: ", "Members {", "]")), line
                continue
            assert HEADER.match(line), line
            assert t >= last, f"time goes back in {path}: {line}"
            last = t
            if "[XNIO-1 task-" in line:
                assert REQUEST.match(line), line
                requests += 1
            else:  # main and Hazelcast threads: blank id, three spaces before the level
                assert BLANK_ID.match(line), line
                hazelcast += "[hz." in line
    assert requests > 10_000
    assert hazelcast > 1_000


def test_logger_names_are_abbreviated_like_logback() -> None:
    assert abbreviate("com.networknt.oauth.token.handler.Oauth2TokenPostHandler") == (
        "c.n.o.t.h.Oauth2TokenPostHandler"
    )
    assert abbreviate("com.networknt.oauth.cache.UserMapStore") == (
        "c.networknt.oauth.cache.UserMapStore"
    )
    assert abbreviate("com.networknt.openapi.ApiNormalisedPath") == (
        "c.n.openapi.ApiNormalisedPath"
    )
    assert abbreviate("com.networknt.config.Config") == "com.networknt.config.Config"


def test_level_mix_and_token_is_most_verbose(sample: Sample) -> None:
    levels: Counter[str] = Counter()
    traffic: Counter[str] = Counter()
    for path in sample.files():
        lines = lines_of(path)[INIT:]
        traffic[service_of(path)] += len(lines)
        if service_of(path) == "token":
            levels.update(m.group(1) for line in lines if (m := HEADER.match(line)))
    total = sum(levels.values())
    assert levels["DEBUG"] / total > 0.8
    assert 0.04 < levels["INFO"] / total < 0.15
    assert 0 < levels["WARN"] / total < 0.02
    assert traffic.most_common(1)[0][0] == "token"
    assert traffic["code"] > traffic["client"] and traffic["refresh-token"] > traffic["key"]


# --------------------------------------------------------------------------- start-up


def test_every_file_starts_with_the_same_startup_shape(sample: Sample) -> None:
    masked: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for path in sample.files():
        head = lines_of(path)[:INIT]
        assert "server starts" in head[0]
        assert not any("XNIO-1 task" in line or "partition-operation" in line for line in head)
        assert "Https Server started" in head[-1]
        shape = tuple(re.sub(r"[0-9a-f]", "x", line[13:]) for line in head)
        run = path.parent.parent.name
        masked.setdefault((run, service_of(path)), set()).add(shape)
    # One shape per run and service: nothing in the start-up depends on the test case.
    assert len(masked) == SAMPLE.runs * len(SERVICES)
    assert all(len(shapes) == 1 for shapes in masked.values())


@pytest.mark.parametrize("init_lines", [0, 37, 100, 150])
def test_init_lines_is_the_exact_physical_startup_length(tmp_path: Path, init_lines: int) -> None:
    generate(tmp_path, SynthConfig(runs=1, token_lines=5, init_lines=init_lines, metrics=False))
    for path in sorted(tmp_path.glob("logs/*/*/*.log"))[:20]:
        lines = lines_of(path)
        first_traffic = next(
            i for i, line in enumerate(lines) if "XNIO-1 task" in line or "partition-op" in line
        )
        assert first_traffic == init_lines, path


# --------------------------------------------------------------------------- faults


def _affected(test_case: str, service: str) -> str:
    """How a service takes part in a test case: correct, primary, secondary or other."""
    if test_case == CORRECT:
        return "correct"
    fault = FAULTS[test_case]
    if service == fault.primary:
        return "primary"
    return "secondary" if service in fault.secondary else "other"


def test_faults_show_up_only_in_the_handling_services(sample: Sample) -> None:
    errors: Counter[tuple[str, str]] = Counter()
    events: Counter[tuple[str, str]] = Counter()
    traces: Counter[tuple[str, str]] = Counter()
    for path in sample.files():
        service, test_case = service_of(path), path.parent.name
        role = _affected(test_case, service)
        lines = lines_of(path)[INIT:]
        heads = [m.group(1) for line in lines if (m := HEADER.match(line))]
        has_trace = any(line.startswith("\tat ") for line in lines)
        errors[service, role] += heads.count("ERROR")
        events[service, role] += len(heads)
        traces[service, role] += has_trace
        if role == "primary":
            assert has_trace, f"no stack trace in {path}"
            code = FAULTS[test_case].code
            assert any(f'"code":"{code}"' in line for line in lines), path
        else:
            assert not has_trace, f"stack trace in unaffected {path}"
    for service in {f.primary for f in FAULTS.values()}:
        primary = errors[service, "primary"] / events[service, "primary"]
        correct = errors[service, "correct"] / events[service, "correct"]
        unaffected = (errors[service, "correct"] + errors[service, "other"]) / (
            events[service, "correct"] + events[service, "other"]
        )
        assert primary > 2 * unaffected and primary > 0.01, service
        assert primary > correct, service
    assert traces["token", "correct"] == 0


def test_correct_token_logs_have_rare_errors(sample: Sample) -> None:
    for path in sample.root.glob(f"logs/*/{CORRECT}/{service_file_name('token')}"):
        lines = lines_of(path)[INIT:]
        heads = [m.group(1) for line in lines if (m := HEADER.match(line))]
        assert 1 <= heads.count("ERROR") <= 0.03 * len(heads), path
        assert any("handleRequest - ApiException" in line or "Exception:" in line
                   for line in lines)


# --------------------------------------------------------------------------- time


def test_a_run_started_before_midnight_wraps_to_the_next_day(tmp_path: Path) -> None:
    config = SynthConfig(runs=1, start_epoch=MIDNIGHT_EPOCH, token_lines=5, metrics=False)
    summary = generate(tmp_path, config)
    start = tod_ms("23:59:00.000 ")
    assert start is not None
    run_dir = tmp_path / "logs" / summary.runs[0]
    wrapped_in_file = later_and_smaller = False
    for path in sorted(run_dir.glob("*/*.log")):
        times = [t for t in map(tod_ms, lines_of(path)) if t is not None]
        wrapped_in_file |= any(a - b > 12 * 3600 * 1000 for a, b in pairwise(times))
        later_and_smaller |= times[0] < start
    assert later_and_smaller
    first = run_dir / plan_runs(config)[0].windows[0].test_case / service_file_name("token")
    assert lines_of(first)[0].startswith("23:59:0")
    assert wrapped_in_file or later_and_smaller


def test_volume_scales_with_duration(sample: Sample) -> None:
    plan = plan_runs(SAMPLE)[0]
    lengths = {
        w.test_case: len(lines_of(sample.root / "logs" / plan.name / w.test_case
                                  / service_file_name("token"))) - INIT
        for w in plan.windows
    }
    durations = {w.test_case: (w.end_ms - w.start_ms) / 1000 for w in plan.windows}
    short = [lengths[c] for c, d in durations.items() if d < 60]
    long = [lengths[c] for c, d in durations.items() if d > 140]
    assert sum(long) / len(long) > 2 * sum(short) / len(short)
    mean = sum(lengths.values()) / len(lengths)
    assert 0.8 * SAMPLE.token_lines < mean < 1.3 * SAMPLE.token_lines


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="runs"):
        SynthConfig(runs=0)
    with pytest.raises(ValueError, match="token_lines"):
        SynthConfig(token_lines=0)
    with pytest.raises(ValueError, match="init_lines"):
        SynthConfig(init_lines=-1)
    with pytest.raises(ValueError, match="startup"):
        SynthConfig(startup="sometimes")
    with pytest.raises(ValueError, match="schedule"):
        SynthConfig(schedule="v3")
    with pytest.raises(ValueError, match="error_share"):
        SynthConfig(error_share=(0.2, 0.1))
    with pytest.raises(ValueError, match="layout"):
        SynthConfig(layout="v3")


# --------------------------------------------------------------------------- harder modes

HARD = SynthConfig.hard(runs=2, seed=8, token_lines=600, metrics=False)


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    root = tmp_path_factory.mktemp("hard")
    return Sample(root, generate(root, HARD))


def test_hard_mode_writes_start_up_output_only_in_each_runs_first_test_case(hard: Sample) -> None:
    for plan in plan_runs(HARD):
        first = plan.windows[0].test_case
        for path in sorted((hard.root / "logs" / plan.name).glob("*/*.log")):
            starts = "server starts" in lines_of(path)[0]
            assert starts == (path.parent.name == first), path


def test_hard_mode_has_failures_in_correct_traffic_and_frequency_only_error_cases(
        tmp_path: Path) -> None:
    config = SynthConfig.hard(runs=2, seed=8, token_lines=600, metrics=False,
                              background_faults=(0.03, 0.04))
    generate(tmp_path, config)
    shared = shared_faults(config)
    assert 0.3 * len(FAULTS) < len(shared) < 0.7 * len(FAULTS)
    codes = {FAULTS[t].code for t in shared}
    status = re.compile(r'"code":"(ERR\d+)"')
    in_correct = Counter(code for path in tmp_path.glob("logs/*/correct/*.log")
                         for code in status.findall(path.read_text()))
    # Correct traffic carries status lines (and traces) of the shared kinds, none other.
    assert in_correct and set(in_correct) <= codes
    assert any("\tat " in p.read_text() for p in tmp_path.glob("logs/*/correct/*.log"))


def test_hard_mode_draws_values_of_varied_lengths_and_alphabets(hard: Sample) -> None:
    text = "\n".join(p.read_text() for p in hard.root.glob("logs/*/*/*user*.log"))
    users = set(re.findall(r"userId = (\S+) userType", text))
    assert len({len(u) for u in users}) > 5  # not one fixed length
    assert any(u.isalpha() for u in users) and not all(re.fullmatch(r"[0-9a-f]{8}", u)
                                                         for u in users)
    codes = re.findall(r"code = (\S+) redirectUri", "\n".join(
        p.read_text() for p in hard.root.glob("logs/*/*/*token*.log")))
    assert len({len(c) for c in codes}) > 10


def test_error_share_sets_how_many_requests_fail(tmp_path: Path) -> None:
    def failing(config: SynthConfig) -> int:
        generate(tmp_path / str(config.error_share), config)
        case = "access_token_client_secret_wrong_401"
        return sum(p.read_text().count("UNAUTHORIZED_CLIENT /oauth2/token@post")
                   for p in (tmp_path / str(config.error_share)).glob(f"logs/*/{case}/*.log"))

    base = SynthConfig(runs=1, seed=4, token_lines=3000, metrics=False)
    few = failing(SynthConfig(**{**base.__dict__, "error_share": (0.005, 0.006)}))
    many = failing(SynthConfig(**{**base.__dict__, "error_share": (0.05, 0.06)}))
    assert 1 <= few < many / 5


def test_v1_schedule_plays_correct_first_for_60_seconds_then_10_each() -> None:
    [plan] = plan_runs(SynthConfig(runs=1, schedule="v1"))
    assert [w.test_case for w in plan.windows] == list(TEST_CASES)
    durations = [(w.end_ms - w.start_ms) // 1000 for w in plan.windows]
    assert durations[0] == 60 and set(durations[1:]) == {10}


# --------------------------------------------------------------------------- LO2 v2 layout

#: Seed 0 with 3 runs: the second run lacks some error test cases (RunPlan.missing).
V2 = SynthConfig.lo2_v2(runs=3, seed=0, token_lines=5)
V2_RUN_NAME = re.compile(r"^oauth2_logs_LO2_run_\d+$")


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    root = tmp_path_factory.mktemp("v2")
    return Sample(root, generate(root, V2))


def test_lo2_v2_is_v2_layout_shuffled_startup_first() -> None:
    assert (V2.layout, V2.schedule, V2.startup) == ("v2", "shuffled", "first")
    assert SynthConfig().layout == "v1" and SynthConfig(layout="v1") == SynthConfig()
    both = SynthConfig.lo2_v2(**HARD_VALUES, runs=2)
    assert both == SynthConfig.hard(layout="v2", schedule="shuffled", runs=2)
    assert SynthConfig.lo2_v2(startup="every").startup == "every"  # overrides win


def test_v2_run_names_folders_and_summary(v2: Sample) -> None:
    plans = plan_runs(V2)
    assert v2.summary.runs == [run_name(p.epoch, "v2") for p in plans] == [p.name for p in plans]
    assert all(V2_RUN_NAME.match(r) for r in v2.summary.runs)
    folders = {p.name for p in (v2.root / "logs").iterdir()}
    assert folders == {*v2.summary.runs, PRE_RUN_FOLDER}
    assert {p.name for p in (v2.root / "metrics").iterdir()} == {
        f"{r}.csv" for r in v2.summary.runs}
    written = [p for p in v2.root.rglob("*") if p.is_file()]
    assert v2.summary.files == len(written)
    assert v2.summary.bytes == sum(p.stat().st_size for p in written)


def test_v2_pre_run_results_hold_no_logs_and_are_not_a_run(v2: Sample) -> None:
    folder = v2.root / "logs" / PRE_RUN_FOLDER
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert files and not list(folder.rglob("*.log"))
    assert any(p.is_dir() for p in folder.iterdir())  # a subfolder, as a scanner must expect
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["test_cases"] == len(TEST_CASES)
    assert summary["finished"] < V2.start_epoch
    with open(folder / "checks" / "test_cases.csv", newline="") as fh:
        assert [r["test_case"] for r in csv.DictReader(fh)] == list(TEST_CASES)
    assert PRE_RUN_FOLDER not in v2.summary.runs


def test_v2_test_cases_have_small_prometheus_metrics(v2: Sample) -> None:
    expected = {f"{name}.json" for name in TEST_CASE_METRICS}
    for plan in plan_runs(V2):
        for window in plan.windows:
            folder = v2.root / "logs" / plan.name / window.test_case / "metrics"
            paths = sorted(folder.iterdir())
            assert {p.name for p in paths} == expected, folder
            assert sum(p.stat().st_size for p in paths) < 4096
            for path in paths:
                body = json.loads(path.read_text())
                assert body["status"] == "success"
                assert body["data"]["resultType"] == "matrix"
                [series] = body["data"]["result"]
                assert series["metric"]["__name__"] == path.stem
                stamps = [ts for ts, _ in series["values"]]
                assert stamps and stamps == sorted(stamps)
                assert window.start_ms <= stamps[0] * 1000 and stamps[-1] * 1000 < window.end_ms
                assert all(isinstance(v, str) and float(v) >= 0 for _, v in series["values"])


def test_v2_metrics_flag_also_skips_per_test_case_metrics(tmp_path: Path) -> None:
    generate(tmp_path, SynthConfig.lo2_v2(runs=1, token_lines=5, init_lines=5, metrics=False))
    assert not list(tmp_path.rglob("metrics"))
    assert (tmp_path / "logs" / PRE_RUN_FOLDER / "summary.json").is_file()


def test_v2_some_runs_lack_error_cases_but_never_correct(v2: Sample) -> None:
    plans = plan_runs(V2)
    assert [bool(p.missing) for p in plans] == [False, True, False]  # documented for seed 0
    for plan in plans:
        assert CORRECT not in plan.missing and len(plan.missing) <= 3
        assert set(plan.missing) <= set(ERROR_TEST_CASES)
        present = set(TEST_CASES) - set(plan.missing)
        assert {w.test_case for w in plan.windows} == present
        assert {p.name for p in (v2.root / "logs" / plan.name).iterdir()} == present
        with open(v2.root / "metrics" / f"{plan.name}.csv", newline="") as fh:
            assert {r["test_name"] for r in csv.DictReader(fh)} == present
    # About one run in three, 1-3 cases each; never in the v1 layout.
    lost = [missing_test_cases(V2, i) for i in range(600)]
    assert 0.25 < sum(map(bool, lost)) / len(lost) < 0.42
    assert {len(m) for m in lost} == {0, 1, 2, 3}
    assert not any(missing_test_cases(SynthConfig(), i) for i in range(100))


def test_v2_start_up_output_only_in_each_runs_first_shuffled_test_case(v2: Sample) -> None:
    plans = plan_runs(V2)
    assert any(p.windows[0].test_case != CORRECT for p in plans)  # shuffled, not v1's order
    for plan in plans:
        first = plan.windows[0].test_case
        for path in sorted((v2.root / "logs" / plan.name).glob("*/*.log")):
            lines = lines_of(path)
            starts = "server starts" in lines[0]
            assert starts == (path.parent.name == first), path
            if starts:
                assert "Https Server started" in lines[INIT - 1]


def test_v2_same_config_is_byte_identical(tmp_path: Path, v2: Sample) -> None:
    again = tmp_path / "again"
    generate(again, V2)
    assert digests(again) == digests(v2.root)
    other = tmp_path / "other"
    generate(other, SynthConfig.lo2_v2(runs=1, seed=1, token_lines=5, init_lines=5))
    assert digests(other) != digests(v2.root)


@pytest.mark.parametrize(("flags", "expected"), [
    ([], SynthConfig()),
    (["--hard"], SynthConfig.hard()),
    (["--layout", "v1"], SynthConfig()),
    (["--layout", "v2"], SynthConfig.lo2_v2()),
    (["--layout", "v2", "--hard"], SynthConfig.lo2_v2(**HARD_VALUES)),
    (["--layout", "v2", "--hard", "--startup", "every", "--schedule", "v1"],
     SynthConfig.hard(layout="v2", startup="every", schedule="v1")),
    (["--layout", "v2", "--schedule", "v1"], SynthConfig.lo2_v2(schedule="v1")),
])
def test_cli_layout_flag_builds_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           flags: list[str], expected: SynthConfig) -> None:
    from lo2_dagster import cli, synth

    seen: list[SynthConfig] = []

    def fake_generate(out: Path, config: SynthConfig) -> SynthSummary:
        seen.append(config)
        return SynthSummary(Path(out), [], 0, 0, 0, 0.0)

    monkeypatch.setattr(synth, "generate", fake_generate)
    assert cli.main(["synth", str(tmp_path), *flags]) == 0
    assert seen == [expected]
