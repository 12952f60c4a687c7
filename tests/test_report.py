"""From a real sweep to what a person sees: `perf report` opened in headless Chromium, the
analysis notebook executed top to bottom, `perf compare`, and `perf apply` guarding the
user's repository."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
from PIL import Image

from perf import params
from perf.modelconfig import KIND_GPU, read_config

from .conftest import REPO, perf_cli, sweep

ROOT = REPO.parent
# The recommendation's first words: a change, or the repository's own config where none is shown to pay.
SHIP_OR_KEEP = re.compile(r"(Ship |Keep the repository's own config \()")
PLOTS = {"throughput_latency", "percentiles", "breakdown", "heatmap", "resources"}


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's own model repository: a copy of the reference one."""
    repo = tmp_path_factory.mktemp("user") / "model_repo"
    shutil.copytree(REPO, repo)
    return repo


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, user_repo: Path) -> Path:
    """A small real sweep with two parameters and repeats: every plot has something to draw."""
    out = tmp_path_factory.mktemp("sweep") / "run"
    done = sweep("--repo", str(user_repo), "--model", "ensemble_model",
                 "--param", "classifier.instance_count", "--values", "1", "2",
                 "--param", "classifier.preferred_batch_size", "--values", "[4]", "[16]",
                 "--concurrency", "1", "2", "--repeats", "2", "--slo-p99-ms", "100", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def report(run: Path) -> subprocess.CompletedProcess:
    return perf_cli("report", str(run))


def test_the_report_writes_a_page_and_every_plot(run: Path, report: subprocess.CompletedProcess) -> None:
    assert report.returncode == 0, report.stdout + report.stderr
    assert SHIP_OR_KEEP.search(report.stdout) and f"report: {run / 'report.html'}" in " ".join(report.stdout.split())
    pngs = {p.stem: p for p in (run / "plots").glob("*.png")}
    assert set(pngs) == PLOTS
    for path in pngs.values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 250


def test_the_report_in_a_real_browser(run: Path, report: subprocess.CompletedProcess, browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto((run / "report.html").as_uri())
    images = page.evaluate("[...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, alt: i.alt}))")
    assert len(images) == len(PLOTS) and all(i["ok"] for i in images), images
    recommendation = page.locator("#recommendation")
    assert recommendation.is_visible()
    headline = recommendation.locator(".headline").inner_text()
    # Which config wins is the machine's to say; that the headline names it by its settings is ours.
    assert SHIP_OR_KEEP.match(headline) and "instance_count=" in headline and "preferred_batch_size=" in headline
    box = recommendation.bounding_box()
    assert box["y"] < 400, "the recommendation is the first thing on the page"
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    pixels = np.asarray(shot)
    assert shot.height > 2000, "the plots make a long page"
    assert pixels.std() > 20, "a rendered page, not a blank one"
    # The plots' colours: tab10's blue or orange lines and viridis in the heatmap are not page chrome.
    coloured = (np.abs(pixels[..., 0].astype(int) - pixels[..., 2].astype(int)) > 60).mean()
    assert coloured > 0.002, f"too few coloured pixels for plots to be there ({coloured:.4f})"
    shot.save(tmp_path / "report.png")


def test_the_notebook_runs_top_to_bottom_on_the_run(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "analysis.ipynb"), str(out), parameters={"RUN": str(run)},
        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3",
    )  # fmt: skip
    notebook = nbformat.read(out, as_version=4)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 6, "the report's five plots and the notebook's own"
    text = "".join(o.get("text", "") for o in outputs)
    assert SHIP_OR_KEEP.search(text) and str(run) in text


def test_compare_overlays_two_runs(run: Path, tmp_path: Path, browser) -> None:
    other = tmp_path / "other"
    shutil.copytree(run, other)  # a second run of the same sweep: the comparison must match configs up
    out = tmp_path / "cmp"
    done = perf_cli("compare", str(run), str(other), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.stem for p in out.glob("*.png")} == {"throughput_latency", "percentiles", "resources"}
    assert "+0.0 %" in done.stdout, "the same config in both runs is matched and compared"
    page = browser.new_page()
    page.goto((out / "compare.html").as_uri())
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("text=A: run").is_visible() and page.locator("text=B: other").is_visible()


def test_apply_refuses_without_confirmation_and_changes_nothing(run: Path, user_repo: Path) -> None:
    before = {p: p.read_bytes() for p in user_repo.rglob("*") if p.is_file()}
    done = perf_cli("apply", str(run), stdin=subprocess.DEVNULL)
    # Whatever won, the diff (or "nothing to write") is shown and no file is touched.
    if "nothing to write" not in done.stdout:
        assert done.returncode == 1 and "--yes" in done.stdout, done.stdout
        assert "config.pbtxt (recommended)" in done.stdout
    assert {p: p.read_bytes() for p in user_repo.rglob("*") if p.is_file()} == before


def test_apply_writes_the_winner_and_keeps_the_original(run: Path, user_repo: Path) -> None:
    config = user_repo / "classifier" / "config.pbtxt"
    # The repository has moved on since the sweep (a setting no point had), so there is
    # always something to write, whichever config won.
    moved_on = config.read_text().replace("preferred_batch_size: [ 32, 64 ]", "preferred_batch_size: [ 8 ]")
    assert moved_on != config.read_text()
    config.write_text(moved_on)
    done = perf_cli("apply", str(run), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    headline = done.stdout.splitlines()[0]
    (backup,) = config.parent.glob("config.pbtxt.*.bak")
    assert backup.read_text() == moved_on, "the original is kept byte for byte"
    applied = read_config(config)
    count = params.read(applied, "instance_count")
    batch = json.dumps(params.read(applied, "preferred_batch_size"))
    assert f"instance_count={count}" in headline and f"preferred_batch_size={batch}" in headline, headline
    assert applied.instance_group[0].kind == KIND_GPU, "KIND_GPU stays: the host's CPU fallback is not written"
    text = config.read_text()
    assert all(line in text.splitlines() for line in moved_on.splitlines() if line.startswith("#")), "comments stay"
    assert moved_on[moved_on.index("input [") : moved_on.index("instance_group")] in text, "untouched settings stay"
    again = perf_cli("apply", str(run), "--yes")
    assert again.returncode == 0 and "nothing to write" in again.stdout
