"""`perf sweep` end to end on the embedded server: both apply modes, faults, resume, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

from perf import host
from perf.server import EmbeddedServer, Ports

from .conftest import FAST, REPO, perf_cli, processes_mentioning, sweep

# The recommendation's first words: a change, or the repository's own config where none is shown to pay.
ANSWER = r"(Ship |Keep the repository's own config \()(baseline: )?"


@contextlib.contextmanager
def sweep_running(*args: str, rows_first: int) -> Iterator[subprocess.Popen]:
    """A sweep in the background, handed over once it has recorded ``rows_first`` rows;
    killed on the way out if the test left it running."""
    run = Path(args[args.index("--out") + 1])
    proc = subprocess.Popen([sys.executable, "-m", "perf", "sweep", *args, *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for_rows(run, rows_first, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def rows(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "results.csv", dtype={"point_id": str, "load_level": str})


def wait_for_rows(run: Path, count: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "results.csv").is_file() and len(rows(run)) >= count:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} rows after {timeout} s")


def measured(table: pd.DataFrame, again: bool = True) -> pd.DataFrame:
    """The rows measured. Triton may exit under a sweep for reasons of its own (it did once in
    CI, mid reload-sweep): that row is `crashed` and says so, and (``again``) its cell is measured once more on
    the fresh server. Anything else is a lost measurement."""
    assert set(table["status"]) <= {"ok", "crashed"}, table[["status", "error"]].to_string()
    ok = table["status"] == "ok"
    for at, row in table[~ok].iterrows():
        assert "Triton exited" in row["error"], row["error"]
        cell = (table["point_id"] == row["point_id"]) & (table["load_level"] == row["load_level"])
        assert not again or (cell & ok).loc[at:].any(), f"the cell of row {at} was not measured again"
    return table[ok]


def no_server_left(run: Path) -> bool:
    deadline = time.monotonic() + 15
    while processes_mentioning(str(run / "server")) and time.monotonic() < deadline:
        time.sleep(0.5)
    return processes_mentioning(str(run / "server")) == []


def test_a_reload_sweep_records_every_point_level_and_config(tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in REPO.rglob("config.pbtxt")}
    run = tmp_path / "run"
    out = sweep("--model", "ensemble_model", "--param", "classifier.instance_count", "--values", "1", "2",
                "--repeats", "1", "--concurrency", "1", "2", "--out", str(run))  # fmt: skip
    assert out.returncode == 0, out.stdout
    every = rows(run)
    table = measured(every)
    # instance_count 2 is the repository's own value: that point is the baseline.
    assert len(table) == 4 and len(table.groupby(["point_id", "load_level"])) == 4, every[["status", "error"]]
    assert sorted(table["classifier.instance_count"]) == [1, 1, 2, 2]
    assert table.loc[table["classifier.instance_count"] == 2, "is_baseline"].all()
    assert (table["throughput"] > 0).all() and (table["p99_ms"] >= table["p50_ms"]).all()
    for model in ("preprocessor", "classifier"):
        assert (table[f"{model}.requests"] > 0).all()
        assert (table[f"{model}.compute_infer_ms"] > 0).all()
    assert (table["server_cpu_percent"] > 0).all()
    assert (table["server_rss_mb"] > 200).all(), "the python stubs' memory is counted"
    for point_id, count in table.groupby("point_id")["classifier.instance_count"].first().items():
        config = (run / "configs" / point_id / "classifier" / "config.pbtxt").read_text()
        assert f"count: {count}" in config
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["status"] == "finished" and metadata["versions"]["perf_analyzer"] == "2.51.0"
    # Which of two configs this close wins is the machine's noise to decide: either is an answer.
    assert re.search(ANSWER + "instance_count=[12]", " ".join(out.stdout.split())), out.stdout
    assert {p: p.read_bytes() for p in REPO.rglob("config.pbtxt")} == before, "the repository is only read"
    assert no_server_left(run)
    again = sweep("--model", "ensemble_model", "--param", "classifier.instance_count", "--values", "1", "2",
                  "--repeats", "1", "--concurrency", "1", "2", "--out", str(run))  # fmt: skip
    assert again.returncode == 0 and len(rows(run)) == len(every), "a finished run is not measured again"


def test_a_restart_sweep_writes_the_config_and_restarts(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = sweep("--model", "classifier", "--param", "max_batch_size", "--values", "8", "16",
                "--param", "preferred_batch_size", "--values", "[]", "--apply", "restart", "--no-baseline",
                "--repeats", "1", "--concurrency", "2", "--out", str(run))  # fmt: skip
    assert out.returncode == 0, out.stdout
    table = measured(rows(run))
    assert len(table) == 2 and set(table["apply"]) == {"restart"}
    assert sorted(table["classifier.max_batch_size"]) == [8, 16]
    staged = (run / "server" / "repository" / "classifier" / "config.pbtxt").read_text()
    assert "max_batch_size: 16" in staged, "the last point's config was written into the run's own copy"
    assert no_server_left(run)


def test_a_variant_triton_refuses_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """Refused when the server starts with it, and refused as a copy beside the others: the
    configs after it are still measured side by side."""
    for values in (["abc", "1"], ["1", "abc", "2"]):
        run = tmp_path / "-".join(values)
        out = sweep("--model", "ensemble_model", "--param", "classifier.parameters.torch_num_threads", "--values",
                    *values, "--no-baseline", "--repeats", "1", "--concurrency", "1", "--out", str(run))  # fmt: skip
        assert out.returncode == 0, out.stdout
        table = rows(run).set_index("classifier.parameters.torch_num_threads")
        assert table.loc["abc", "status"] == "refused"
        assert "invalid literal for int()" in table.loc["abc", "error"], "Triton's own message"
        assert table.loc["1", "status"] == "ok" and table.loc["1", "throughput"] > 0
        assert "faults recorded: {'refused': 1}" in " ".join(out.stdout.split())
    assert table.loc["2", "status"] == "ok" and table.loc["2", "apply"] == "resident"


SWEEP_3x2 = ["--model", "ensemble_model", "--param", "classifier.instance_count", "--values", "1", "2", "3",
             "--repeats", "1", "--concurrency", "1", "2", "--no-baseline"]  # fmt: skip


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with sweep_running(*SWEEP_3x2, "--out", str(run), rows_first=2) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    killed_at = len(rows(run))
    assert 2 <= killed_at < 6
    assert no_server_left(run), "Triton dies with the sweep that started it"
    out = sweep(*SWEEP_3x2, "--out", str(run))
    assert out.returncode == 0, out.stdout
    every = rows(run)
    keys = list(zip(every["point_id"], every["load_level"], every["repeat"], strict=True))
    assert len(keys) == len(set(keys)), "nothing measured twice"
    assert len(measured(every)) == 6, "nothing lost"
    assert json.loads((run / "metadata.json").read_text())["resumed_at"]


def test_the_server_killed_mid_sweep_is_recorded_and_survived(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with sweep_running(*SWEEP_3x2, "--out", str(run), rows_first=1) as proc:
        time.sleep(1.5)  # into the next measurement
        (triton,) = [p for p in processes_mentioning(str(run / "server")) if p.name() == "tritonserver"]
        triton.kill()
        output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    table = rows(run)
    crashed = table[table["status"] == "crashed"]
    assert len(crashed) == 1, table[["status", "error"]]
    assert "Triton exited" in crashed["error"].iloc[0]
    after = table.index[table["status"] == "crashed"][0]
    assert (table.loc[after + 1 :, "status"] == "ok").all() and after + 1 < len(table), "the sweep went on"
    cell = table.loc[after, ["point_id", "load_level"]].tolist()
    again = table[(table["point_id"] == cell[0]) & (table["load_level"] == cell[1]) & (table["status"] == "ok")]
    assert len(again) == 1 and again.index[0] > after, "the cell the crash cut short was measured again"
    assert len(table) == 7
    assert no_server_left(run)


@pytest.mark.parametrize(("stop_signal", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_within_seconds_and_leaves_no_server(
    tmp_path: Path, stop_signal: signal.Signals, code: int
) -> None:
    """Ctrl-C, or SIGTERM as a job scheduler, systemd or ``kill`` sends: the sweep stops its
    server and its python stubs, and keeps what it measured for a resume."""
    run = tmp_path / "run"
    with sweep_running(*SWEEP_3x2, "--out", str(run), rows_first=1) as proc:
        proc.send_signal(stop_signal)
        started = time.monotonic()
        output, _ = proc.communicate(timeout=60)
        took = time.monotonic() - started
    assert proc.returncode == code, output
    assert "run the same command to resume" in " ".join(output.split())
    assert took < 20, f"took {took:.1f} s to stop"
    assert json.loads((run / "metadata.json").read_text())["status"] == "interrupted"
    assert no_server_left(run)


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path: Path) -> None:
    out = perf_cli("sweep", "--model", "ensemble_model", "--param", "classifier.preferred_batch_size",
                   "--values", "[8]", "[8,16]", "--concurrency", "1", "2", "--repeats", "3", "--dry-run",
                   "--out", str(tmp_path / "run"))  # fmt: skip
    assert out.returncode == 0, out.stdout
    assert "+  preferred_batch_size: 8" in out.stdout and "-  preferred_batch_size: 32" in out.stdout
    assert "3 points, concurrency 1 2 x 3 repeats, apply by reload: about" in " ".join(out.stdout.split())
    assert not (tmp_path / "run").exists()
    assert not any(p.name() == "tritonserver" and str(tmp_path) in " ".join(p.cmdline()) for p in psutil.process_iter())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "gpus"], "gpus: give --values (perf generates values only for"),
        (["--param", "classifier.kind", "--values", "KIND_GPU"], "this host has no GPU"),
        (["--param", "classifier.instance_count", "--values", "1", "--concurrency", "1", "--request-rate", "5"],
         "not both"),
        (["--param", "classifier.instance_count", "--values", "1", "--servers", "0"], "--servers N starts N"),
        (["--param", "classifier.instance_count", "--values", "1", "--search", "guided", "--concurrency", "2"],
         "--search guided searches each config's concurrency"),
        (["--param", "classifier.instance_count", "--values", "1", "--budget", "3"], "add --search optuna"),
        (["--param", "classifier.instance_count", "--values", "1", "--search", "optuna", "--budget", "3x"],
         "--budget 3x: give a number of configs"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_anything_starts(args: list[str], message: str, tmp_path: Path) -> None:
    out = perf_cli("sweep", "--model", "ensemble_model", *args, "--out", str(tmp_path / "run"))
    assert out.returncode == 1
    assert out.stdout.startswith("error:") and message in " ".join(out.stdout.split())
    assert not (tmp_path / "run").exists()


def searched_rows_are_whole(table: pd.DataFrame) -> pd.DataFrame:
    """Every row of a searched run is measured and says how: its phase, its sample count. The
    measured rows."""
    ok = measured(table, again=False)  # a race's later rounds stand for a crashed race row
    assert set(table["phase"]) <= {"probe", "bisect", "race", "recheck"}
    assert (ok["windows"] == 3).all() and (ok["requests"] > 0).all()
    keys = list(zip(table["point_id"], table["load_level"], table["repeat"], strict=True))
    assert len(keys) == len(set(keys)), "no measurement recorded twice"
    return ok


def test_the_design_cards_command_as_typed_searches_races_and_recommends(tmp_path: Path) -> None:
    """`perf sweep --param preferred_batch_size` from the repository root: the top-level model,
    generated values, each config's load searched, a race, one recommendation, a report."""
    run = tmp_path / "run"
    out = perf_cli("sweep", "--param", "preferred_batch_size", "--slo-p99-ms", "200", "--max-rounds", "2",
                   "--measurement-interval", "300", "--out", str(run), cwd=REPO.parent, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    table = searched_rows_are_whole(rows(run))
    assert table["point_id"].nunique() == 8, "the baseline and [], [2], ..., [64]"
    probes = table[table["phase"] == "probe"]
    assert (probes.groupby("point_id")["load_level"].first() == "1").all(), "every search starts at 1"
    search = json.loads((run / "search.json").read_text())
    race = search["race"]
    assert race["winner"] in race["survivors"] and race["verdict"] in ("clear", "equivalent", "leads", "undecided")
    assert set(race["dropped"]) | set(race["survivors"]) == set(race["entrants"])
    raced = table[table["phase"].isin(["race", "recheck"])]
    assert (table["apply"].iloc[1:] == "resident").all(), "searched and raced side by side, without reloads"
    copies = table.groupby("point_id")["server_rss_mb"].median()
    assert (copies > 200).all() and copies.max() < 2 * copies.min(), "each config's own memory, not all of theirs"
    assert (raced["classifier.requests"] > 0).all() and (raced["preprocessor.requests"] > 0).all(), "the copies'"
    text = " ".join(out.stdout.split())
    assert re.search(ANSWER + "preferred_batch_size=", text) and "Noise floor" in text, text
    report = perf_cli("report", str(run))
    assert report.returncode == 0, report.stdout + report.stderr
    page = (run / "report.html").read_text()
    assert "The search and the race" in page and "won (" in page
    assert no_server_left(run)


def test_a_cpu_hog_beside_the_server_costs_no_row(tmp_path: Path) -> None:
    """Noise widens intervals; it never loses a measurement."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        run = tmp_path / "run"
        out = sweep("--model", "ensemble_model", "--param", "classifier.instance_count", "--values", "1", "2",
                    "--concurrency", "1", "4", "--repeats", "2", "--no-baseline", "--out", str(run))  # fmt: skip
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert out.returncode == 0, out.stdout
    table = measured(rows(run))
    assert len(table) == 8 and (table["throughput_sd"] >= 0).all() and (table["windows"] == 3).all()


RACE = ["--model", "ensemble_model", "--param", "classifier.instance_count", "--values", "1", "2", "--no-baseline",
        "--slo-p99-ms", "200", "--max-rounds", "3", "--measurement-interval", "300"]  # fmt: skip


def test_race_by_reload_reloads_each_config_and_keeps_its_memory_figure(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = perf_cli("sweep", *RACE, "--max-rounds", "2", "--race-by-reload", "--out", str(run), timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    raced = rows(run)[lambda t: t["phase"].isin(["race", "recheck"])]
    assert len(raced) and (raced["apply"] == "reload").all() and (raced["server_rss_mb"] > 0).all()
    assert no_server_left(run)


def killed_once(run: Path, args: list[str], when: Callable[[pd.DataFrame], bool]) -> pd.DataFrame:
    """Run a sweep, SIGKILL it once its table satisfies ``when``: the rows it left."""
    proc = subprocess.Popen([sys.executable, "-m", "perf", "sweep", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not ((run / "results.csv").is_file() and when(rows(run))):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.3)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rows(run)


def test_resume_after_sigkill_mid_race_goes_on_with_the_same_race(tmp_path: Path) -> None:
    run = tmp_path / "run"
    before = killed_once(run, [*RACE, "--out", str(run)], lambda table: (table["phase"] == "race").any())
    assert no_server_left(run)
    out = perf_cli("sweep", *RACE, "--out", str(run), timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    after = rows(run)
    searched_rows_are_whole(after)
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before, check_dtype=False)
    probes = lambda t: len(t[t["phase"].isin(["probe", "bisect"])])  # noqa: E731
    assert probes(after) == probes(before), "the load search is not done again"
    race = json.loads((run / "search.json").read_text())["race"]
    assert race["winner"] is not None and race["rounds"] >= 1
    assert json.loads((run / "metadata.json").read_text())["resumed_at"]


TWO_BY_TWO = ["--model", "ensemble_model", "--param", "classifier.instance_count", "--values", "1", "2",
              "--param", "preprocessor.instance_count", "--values", "1", "2"]  # fmt: skip
BUDGETED = [*TWO_BY_TWO, "--budget", "3", "--slo-p99-ms", "200", "--max-rounds", "2", "--measurement-interval", "300"]


@pytest.mark.parametrize("search", ["guided", "optuna"])
def test_a_budgeted_search_killed_mid_way_resumes_the_same_search(search: str, tmp_path: Path) -> None:
    """SIGKILL during the second config's load search; the same command again goes on with
    the same search (the rows it had, then its next configs), measures three configs in all,
    races the best and says so in the summary and the report."""
    run = tmp_path / "run"
    args = [*BUDGETED, "--search", search, "--out", str(run)]
    before = killed_once(run, args, lambda table: table["point_id"].nunique() >= 2)
    assert no_server_left(run)
    out = perf_cli("sweep", *args, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    after = rows(run)
    searched_rows_are_whole(after)
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before, check_dtype=False)
    budgeted = json.loads((run / "search.json").read_text())["budgeted"]
    chosen = [step["point"] for step in budgeted["trail"]]
    searched_in_order = list(dict.fromkeys(after[after["phase"].isin(["probe", "bisect"])]["point_id"]))
    assert chosen == searched_in_order and len(chosen) == 3 and budgeted["stopped"] == "the budget: 3 configs"
    assert chosen[:2] == list(dict.fromkeys(before["point_id"])), "the search went on where it stood"
    assert budgeted["trail"][0]["why"] == "the repository's own config"
    assert all(step["score"] > 0 for step in budgeted["trail"])
    race = json.loads((run / "search.json").read_text())["race"]
    assert race["winner"] in chosen and set(race["entrants"]) <= set(chosen)
    text = " ".join(out.stdout.split())
    assert "Searched 3 of 5 configs" in text or "Searched 3 of 4 configs" in text, text
    assert perf_cli("report", str(run)).returncode == 0
    assert "The budgeted search" in (run / "report.html").read_text()
    assert no_server_left(run)


def second_server_killed(run: Path, servers: list[str], kill: Callable[[], None]) -> tuple[int, str]:
    """A sweep of the 2x2 space on two servers; ``kill`` once the second has measured twice:
    the sweep's exit code and output."""
    args = [*TWO_BY_TWO, "--no-baseline", "--slo-p99-ms", "200", "--max-rounds", "2",
            "--measurement-interval", "300", *servers, "--out", str(run)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "perf", "sweep", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for_rows(run, 1, proc)
        deadline = time.monotonic() + 300
        while (rows(run)["server"] == 1).sum() < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.3)
        time.sleep(1.0)  # into its next measurement
        kill()
        output, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, output


def test_two_servers_search_configs_at_once_and_one_killed_takes_no_row(tmp_path: Path) -> None:
    """`--servers 2`: two embedded servers search configs at the same time, each row says
    which server measured it, the race runs on the first. The second server's Triton killed
    mid-sweep is one crashed row; the sweep restarts it and finishes, nothing lost or twice."""
    run = tmp_path / "run"

    def kill() -> None:
        (triton,) = [p for p in processes_mentioning(str(run / "server2")) if p.name() == "tritonserver"]
        triton.kill()

    returncode, output = second_server_killed(run, ["--servers", "2"], kill)
    assert returncode == 0, output
    table = rows(run)
    crashed = table[table["status"] == "crashed"]
    assert len(crashed) == 1 and (crashed["server"] == 1).all(), table[["server", "status", "error"]]
    assert set(table["status"]) <= {"ok", "crashed"}
    searched = table[table["phase"].isin(["probe", "bisect"]) & (table["status"] == "ok")]
    assert set(searched["server"]) == {0, 1}, "both servers searched"
    keys = list(zip(table["point_id"], table["load_level"], table["repeat"], strict=True))
    assert len(keys) == len(set(keys)), "no measurement recorded twice"
    assert table["point_id"].nunique() == 4 and set(searched["point_id"]) == set(table["point_id"])
    raced = table[table["phase"].isin(["race", "recheck"])]
    assert len(raced) and (raced["server"] == 0).all(), "the race on one server"
    race = json.loads((run / "search.json").read_text())["race"]
    assert race["winner"] is not None
    assert no_server_left(run) and not processes_mentioning(str(run / "server2"))


def test_a_sweep_over_two_running_servers_survives_losing_one(tmp_path: Path) -> None:
    """`--url A --url B`: two servers perf did not start (as on two machines) search configs at
    once. B dies mid-sweep: its measurement is a crashed row, and its configs go on on A; the
    sweep finishes with every config searched, nothing measured twice."""
    with (EmbeddedServer(REPO, ports=Ports(*host.free_ports(3)), workdir=tmp_path / "a") as a,
          EmbeddedServer(REPO, ports=Ports(*host.free_ports(3)), workdir=tmp_path / "b") as b):  # fmt: skip
        run = tmp_path / "run"
        returncode, output = second_server_killed(run, ["--url", a.grpc_url, "--url", b.grpc_url],
                                                  lambda: psutil.Process(b.pid).kill())  # fmt: skip
        assert returncode == 0, output
        assert a.is_ready(), "perf leaves a server it did not start running"
    table = rows(run)
    crashed = table.index[table["status"] == "crashed"]
    assert len(crashed) == 1 and table.loc[crashed[0], "server"] == 1, table[["server", "status", "error"]]
    assert (table.loc[crashed[0] + 1 :, "server"] == 0).all(), "nothing more on the server that went away"
    keys = list(zip(table["point_id"], table["load_level"], table["repeat"], strict=True))
    assert len(keys) == len(set(keys))
    ok = table[table["status"] == "ok"]
    assert ok["point_id"].nunique() == 4 and set(ok["server"]) == {0, 1}
    assert json.loads((run / "search.json").read_text())["race"]["winner"] is not None
