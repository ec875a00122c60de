"""Backfills as users launch them, against a real `dagster dev` (webserver + daemon) on a tiny
generated dataset whose runs the source-files sensor discovered.

The UI's "Materialize all" as a user clicks it: a real Chromium (Debian's, driven by
Playwright) opens the global asset lineage, clicks "Materialize all", picks "All" partitions
and launches the backfill. The test proves the click launched exactly one backfill of every
asset over the 3 runs, that it ran as batches (one Dagster run per stage, the per-run stages
with all 3 runs), that it succeeded, that every run's files exist and nothing is stale
afterwards, and that the UI shows it (toast, backfill page, anomaly_model's page, the model
report's plots, a run's explanation summary). Then the CLI: `dagster job backfill` rescores
every run. One deployment serves both: a whole-graph backfill paces at the daemon's 30 s
iteration. Screenshots land in lo2_dagster_tests/screenshots/ (git-ignored)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import polars as pl
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from lo2_dagster.defs.detect.report import PLOTS
from lo2_dagster.devserver import FINISHED, DagsterDev, deployment

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it, never `playwright install`
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
UI_TIMEOUT_MS = 60_000  # for every Playwright wait: a busy CI box renders the graph slowly
def labelled(page: Page, label: str) -> Locator:
    """The box holding a label and its value (the UI's label-above-value layout)."""
    return page.get_by_text(label, exact=True).locator("xpath=..")


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as screenshots/<name>.png."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def launch_materialize_all(page: Page, url: str, assets: int, partitions: int) -> str:
    """On the global asset lineage: "Materialize all" -> "All" partitions -> "Launch backfill".
    Returns the backfill id the UI's "Created backfill" toast links to."""
    page.goto(f"{url}/asset-groups")
    # The accessible name includes the icon's label ("materialization Materialize all (10)…").
    materialize_all = page.get_by_role("button", name=re.compile(r"Materialize all"))
    expect(materialize_all).to_contain_text(f"Materialize all ({assets})")
    shot(page, "1-asset-graph")
    materialize_all.click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Launch runs to materialize {assets} assets")
    # Dynamic partitions start with none selected, so "Launch backfill" is disabled.
    launch = dialog.get_by_role("button", name="Launch backfill", exact=True)
    expect(launch).to_be_disabled()
    dialog.get_by_role("button", name="All", exact=True).click()
    expect(dialog).to_contain_text(f"{partitions} partitions")
    expect(launch).to_be_enabled()
    shot(page, "2-materialize-all-dialog")
    launch.click()

    # A toast "Created backfill <id>" with a "View" link to /runs/b/<id>; it fades after ~5 s.
    toast = page.get_by_role("region", name=re.compile("Notifications")).get_by_role(
        "listitem").filter(has_text="Created backfill")
    expect(toast).to_contain_text(re.compile(r"Created backfill \w+"))
    shot(page, "3-graph-after-launch")
    href = toast.get_by_role("link", name="View").get_attribute("href") or ""
    expect(dialog).to_be_hidden()
    match = re.fullmatch(r"/runs/b/(\w+)/?", href)
    assert match, f"toast links to {href!r}"
    return match.group(1)


def check_report_plots(page: Page, url: str) -> None:
    """model_report's page: each plot opens from its metadata row and renders as an image
    (decoded by the browser: a natural size, not a broken icon or a file path)."""
    page.goto(f"{url}/assets/lo2/model_report")
    for name, (_, title) in PLOTS.items():
        row = page.get_by_role("row").filter(has_text=f"plot_{name}")
        row.get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog")
        image = dialog.get_by_role("img", name=title)
        expect(image).to_be_visible()
        size = image.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
        assert size[0] and size[1] >= 600 and size[2] >= 300, (name, size)
        assert image.get_attribute("src").startswith("data:image/png;base64,")
        shot(page, f"7-report-{name}")
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_be_hidden()


def check_explanation_summary(page: Page, url: str, run: str, warehouse: Path) -> None:
    """lo2/explanations[run]'s page shows the run's summary: the anomalous test cases with
    their top reason, as the file lists them."""
    explained = pl.read_parquet(warehouse / "lo2" / "explanations" / f"{run}.parquet")
    top = explained.sort("rank").row(0, named=True)
    page.goto(f"{url}/assets/lo2/explanations?partition={run}")
    row = page.get_by_role("row").filter(has_text="summary")
    expect(row).to_be_visible()
    show = row.get_by_text("[Show Markdown]")
    if show.count():
        show.click()
        row = page.get_by_role("dialog")
    expect(row).to_contain_text("test cases look anomalous")
    expect(row).to_contain_text(top["test_case"])
    shot(page, "8-explanations-summary")


def check_cli_backfill(dev: DagsterDev, runs: list[str], warehouse: Path) -> None:
    """`dagster job backfill -j lo2_rescore --all`: every run rescored (its predictions
    rewritten), and nothing stale afterwards."""
    predictions = {run: warehouse / "lo2" / "predictions" / f"{run}.parquet" for run in runs}
    before = {run: path.stat().st_mtime_ns for run, path in predictions.items()}
    known = {b["id"] for b in dev.backfills()}
    cli = dev.dagster("job", "backfill", "-w", "workspace.yaml", "-j", "lo2_rescore",
                      "--all", "--noprompt")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    [new] = dev.wait_for("the CLI's backfill",
                         lambda: [b["id"] for b in dev.backfills() if b["id"] not in known])
    assert dev.wait_backfill(new) in {"COMPLETED", "COMPLETED_SUCCESS"}, dev.tail()
    # A job backfill is done once its runs are launched (one per partition): wait for them.
    done = dev.wait_for("the CLI backfill's runs", lambda: (
        lambda found: found if len(found) == len(runs) and all(
            status in FINISHED for status, _ in found) else None)(dev.backfill_runs(new)))
    assert sorted(done) == [("SUCCESS", run) for run in runs], dev.tail()
    assert all(path.stat().st_mtime_ns != before[run] for run, path in predictions.items())
    assert set(dev.stale_statuses(runs).values()) == {"FRESH"}


def test_backfills_from_the_ui_and_the_cli(tmp_path: Path, browser: Browser):
    # The source-files sensor (running by default) has discovered the runs.
    with deployment(tmp_path) as deployed:
        dev, runs, warehouse = deployed.dev, deployed.runs, deployed.warehouse
        assert dev.backfills() == []
        assets = sorted("/".join(a["path"]) for a in dev.materializable_assets())

        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        started = time.monotonic()
        try:
            backfill_id = launch_materialize_all(page, dev.url, len(assets), len(runs))

            # Exactly one backfill, the one the toast named: every asset, all 3 runs.
            [backfill] = dev.backfills()
            assert backfill["id"] == backfill_id
            assert backfill["numPartitions"] == len(runs)
            assert sorted("/".join(a["path"]) for a in backfill["assetSelection"]) == assets

            # Its page, as the toast's "View" opens it: the 3 runs, in progress.
            page.goto(f"{dev.url}/runs/b/{backfill_id}")
            expect(page.get_by_text(f"Runs / {backfill_id}", exact=True)).to_be_visible()
            for run in runs:
                expect(page.get_by_text(run, exact=True)).to_be_visible()
            expect(labelled(page, "Status")).to_contain_text(
                re.compile("Requested|In progress|Succeeded"))
            shot(page, "4-backfill-launched")

            status = dev.wait_backfill(backfill_id, timeout=600)
            assert status == "COMPLETED_SUCCESS", dev.tail()
            seconds = time.monotonic() - started
            # Batches: one Dagster run per stage (3 per-run stages with all 3 runs, then the
            # templates, then the model and its report).
            launched = dev.backfill_runs(backfill_id)
            batches = [r for _, r in launched if r]
            assert len(launched) == 5 and {s for s, _ in launched} == {"SUCCESS"}, launched
            assert len(batches) == 3 and all(set(b.split(",")) <= set(runs) for b in batches)

            page.reload()
            expect(labelled(page, "Status")).to_contain_text("Succeeded")
            shot(page, "5-backfill-succeeded")

            for run in runs:
                for asset in ("predictions", "explanations", "score_drift"):
                    assert (warehouse / "lo2" / asset / f"{run}.parquet").exists(), (asset, run)
                predictions = pl.read_parquet(warehouse / "lo2" / "predictions" / f"{run}.parquet")
                assert len(predictions) == 54 * 7
            assert (warehouse / "lo2" / "anomaly_model" / "model.yml").exists()
            assert set(dev.stale_statuses(runs).values()) == {"FRESH"}

            # anomaly_model's page: materialized, successfully, by one of the backfill's runs.
            page.goto(f"{dev.url}/assets/lo2/anomaly_model")
            latest = labelled(page, "Latest materialization")
            expect(latest.get_by_role("img", name="run_success")).to_be_visible()
            href = latest.get_by_role("link").get_attribute("href") or ""
            match = re.match(r"/runs/([0-9a-f-]+)", href)
            assert match and match.group(1) in dev.backfill_run_ids(backfill_id), href
            shot(page, "6-anomaly-model")

            check_report_plots(page, dev.url)
            check_explanation_summary(page, dev.url, runs[0], warehouse)
        except BaseException:
            with suppress(Exception):  # a failure's screenshot must not hide the failure
                shot(page, "failure")
            raise
        check_cli_backfill(dev, runs, warehouse)
    print(f"UI backfill of {len(runs)} runs, whole graph: {seconds:.0f} s")
