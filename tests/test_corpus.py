"""Users' own models, data and servers, for real: the corpus in tests/corpus (a two-input model
without batching, a model that runs torch, a decoupled model, a BLS model) swept on a real
Triton, and a Triton started the way a user starts one, left as found."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from perf import plan, restore
from perf.repository import open_repository
from perf.server import EmbeddedServer, ServerError, _Process
from perf.sweep import LoadSpec, load_problems
from perf.tools import find

from .conftest import free_ports, perf_cli, processes_mentioning, sweep

CORPUS = Path(__file__).parent / "corpus"


def rows(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "results.csv")


def test_an_unset_count_and_count_1_are_one_point() -> None:
    """add_sub's instance group has no count: Triton runs one instance, so a generated or
    given 1 is the repository's own config, not a second point, and no table says 0."""
    repo = open_repository(CORPUS)
    swept = plan.with_baseline(plan.build("add_sub", [("instance_count", ["1", "2"])], repo, 0, 2))
    assert [p.values["add_sub.instance_count"] for p in swept.points] == [1, 2]
    assert [p.baseline for p in swept.points] == [True, False]
    assert any("unset in the repository: Triton reads it as 1" in note for note in swept.points[0].notes)
    apart = plan.with_baseline(plan.build("add_sub", [("instance_count", ["2", "3"])], repo, 0, 2))
    assert [p.values["add_sub.instance_count"] for p in apart.points] == [1, 2, 3]


def test_inputs_perf_cannot_make_up_are_refused_before_anything_starts(tmp_path: Path) -> None:
    """bls takes a model's name as a string: without data the sweep refuses at once, naming the
    input and the option; data that names no input of the model, or FP32 data written as whole
    numbers (perf_analyzer cannot read them), are refused too."""
    result = sweep("--repo", str(CORPUS), "--model", "bls", "--param", "instance_count", "--values", "1",
                   "--concurrency", "1", "--out", str(tmp_path / "run"), timeout=60)  # fmt: skip
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and "MODEL_NAME" in said and "--input-data" in said
    assert not (tmp_path / "run").exists(), "refused before the run folder, let alone a server"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"data": [{"MODEL": ["add_sub"], "INPUT0": [1.0] * 4, "INPUT1": [1.0] * 4}]}))
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps({"data": [{"MODEL_NAME": ["add_sub"], "INPUT0": [1, 2, 3, 4], "INPUT1": [1.0] * 4}]}))
    repo_plan = plan.build("bls", [("instance_count", ["1"])], open_repository(CORPUS), 0, 2)
    problems = [" ".join(load_problems(repo_plan, LoadSpec(input_data=path))) for path in (wrong, whole)]
    assert "MODEL" in problems[0] and "MODEL_NAME" in problems[0], problems[0]
    assert "INPUT0" in problems[1] and "decimal point" in problems[1], problems[1]
    assert load_problems(repo_plan, LoadSpec(input_data=CORPUS / "bls" / "inputs.json")) == []


def test_a_decoupled_model_without_data_times_out_and_the_sweep_ends(tmp_path: Path) -> None:
    """square sends as many responses as its input asks: random int32 asks for millions. Every
    measurement is stopped at its deadline and recorded timed_out, a higher load is not waited
    on again, and the sweep ends (the test's own timeout bounds it) saying why."""
    run = tmp_path / "run"
    result = sweep("--repo", str(CORPUS), "--model", "square", "--param", "instance_count", "--values", "1", "2",
                   "--concurrency", "1", "2", "--out", str(run), timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(run)
    assert len(table) == 4 and set(table["status"]) == {"timed_out"}, table[["status", "error"]]
    assert table["error"].str.contains("deadline").sum() == 2
    assert table["error"].str.contains("not measured: it timed out at concurrency 1").sum() == 2
    assert table["note"].str.contains("request.* of square finished before it was stopped").sum() == 2, "what was seen"
    said = " ".join(result.stdout.split())
    assert "every config timed out" in said and "square is decoupled and no --input-data is given" in said
    assert processes_mentioning(str(run)) == []


def test_a_decoupled_model_with_its_data_is_measured(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = sweep("--repo", str(CORPUS), "--model", "square", "--param", "instance_count", "--values", "1", "2",
                   "--concurrency", "2", "--repeats", "1", "--input-data", str(CORPUS / "square" / "inputs.json"),
                   "--out", str(run))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(run)
    assert set(table["status"]) == {"ok"} and (table["throughput"] > 0).all()
    assert set(table["input_data"]) == {str(CORPUS / "square" / "inputs.json")}, "the row says which data"


def test_a_bls_model_is_measured_with_the_models_it_calls(tmp_path: Path) -> None:
    """bls calls add_sub by name. Without --load the failure names the model and the option;
    with it, both load, and add_sub's own settings are swept as add_sub.NAME."""
    data = str(CORPUS / "bls" / "inputs.json")
    missing = sweep("--repo", str(CORPUS), "--model", "bls", "--param", "instance_count", "--values", "1",
                    "--concurrency", "1", "--repeats", "1", "--input-data", data,
                    "--out", str(tmp_path / "a"))  # fmt: skip
    failed = rows(tmp_path / "a")
    assert set(failed["status"]) == {"failed"}, missing.stdout
    assert failed["error"].str.contains("--load add_sub").all(), failed["error"].tolist()
    run = tmp_path / "b"
    result = sweep("--repo", str(CORPUS), "--model", "bls", "--load", "add_sub", "--param", "add_sub.instance_count",
                   "--values", "1", "2", "--concurrency", "2", "--input-data", data, "--out", str(run))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(run)
    assert set(table["status"]) == {"ok"}, table[["status", "error"]]
    assert sorted(set(table["add_sub.instance_count"])) == [1, 2]
    assert (table["add_sub.requests"] > 0).all(), "the callee's own counters are in every row"
    assert "Ship" in result.stdout or "Keep" in result.stdout


def test_both_drivers_send_the_users_data(tmp_path: Path) -> None:
    """Locust's users send the same input data perf_analyzer does: the BLS model's requests,
    typed by its config as the server reports it (a string, two FP32 tensors)."""
    run = tmp_path / "run"
    result = sweep("--repo", str(CORPUS), "--model", "bls", "--load", "add_sub", "--param", "instance_count",
                   "--values", "1", "--concurrency", "1", "--repeats", "1", "--driver", "locust",
                   "--input-data", str(CORPUS / "bls" / "inputs.json"), "--out", str(run))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(run)
    assert set(table["status"]) == {"ok"}, table[["status", "error"]]
    assert (table["add_sub.requests"] > 0).all(), "every request reached the model bls names in its data"


@pytest.mark.parametrize("model", ["add_sub", "torch_linear"])
def test_plain_python_models_are_swept(tmp_path: Path, model: str) -> None:
    run = tmp_path / "run"
    result = sweep("--repo", str(CORPUS), "--model", model, "--param", "instance_count", "--values", "1", "2",
                   "--concurrency", "1", "2", "--repeats", "1", "--out", str(run))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(run)
    assert set(table["status"]) == {"ok"} and len(table) == 4, table[["status", "error"]]
    assert set(table[f"{model}.instance_count"]) == {1, 2}


# -- a Triton the user runs ------------------------------------------------------------------


@pytest.fixture
def users_triton(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """Started as a user starts it: explicit model control, every model of its own repository."""
    with EmbeddedServer(CORPUS, ports=free_ports(), workdir=tmp_path / "users-triton") as triton:
        yield triton
    assert processes_mentioning(str(tmp_path / "users-triton")) == []


def live(server: EmbeddedServer, model: str) -> dict:
    with server.client() as client:
        return client.get_model_config(model, as_json=True)["config"]


SWEEP = ["--model", "torch_linear", "--param", "max_queue_delay_microseconds", "--values", "0", "5000",
         "--concurrency", "1", "2", "--repeats", "1", "--measurement-interval", "500"]  # fmt: skip


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_each_locustfile_sends_the_users_input_data_as_typed(
    users_triton: EmbeddedServer, tmp_path: Path, protocol: str
) -> None:
    """`locust -f locustfiles/grpc.py` (or http.py) `--input-data FILE`: each request the BLS
    model's string and two FP32 tensors, typed by the config the server reports; add_sub
    serves one call for every request Locust counts."""
    before = users_triton.statistics("add_sub")[0]["inference_stats"]["success"].get("count", 0)
    address = users_triton.grpc_url if protocol == "grpc" else users_triton.http_url
    prefix = tmp_path / "run"
    argv = [str(Path(sys.executable).parent / "locust"), "-f", f"locustfiles/{protocol}.py", "--headless", "-u", "2",
            "-r", "2", "-t", "3s", "--host", address, "--csv", str(prefix), "--model", "bls",
            "--input-data", str(CORPUS / "bls" / "inputs.json")]  # fmt: skip
    done = subprocess.run(argv, cwd=CORPUS.parent.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    stats = pd.read_csv(f"{prefix}_stats.csv").set_index("Name").loc["bls"]
    assert stats["Request Count"] > 20 and stats["Failure Count"] == 0
    after = users_triton.statistics("add_sub")[0]["inference_stats"]["success"]["count"]
    assert int(after) - int(before) == stats["Request Count"], "every request reached the model its data names"


def test_a_url_sweep_leaves_the_server_as_found(users_triton: EmbeddedServer, tmp_path: Path) -> None:
    before = live(users_triton, "torch_linear")
    assert before["dynamic_batching"]["max_queue_delay_microseconds"] == "200"
    run = tmp_path / "run"
    result = perf_cli("sweep", "--repo", str(CORPUS), "--url", users_triton.grpc_url, *SWEEP, "--out", str(run))
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(rows(run)["status"]) == {"ok"}
    assert live(users_triton, "torch_linear") == before
    assert "restored: torch_linear" in " ".join(result.stdout.split())
    assert restore.kept_files(run) == [], "nothing left to restore"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL, then perf restore", "SIGKILL, then the same command"])
def test_an_interrupted_or_killed_url_sweep_leaves_the_server_as_found(
    users_triton: EmbeddedServer, tmp_path: Path, how: str
) -> None:
    """SIGTERM: the sweep puts the config back on its way out. SIGKILL: nothing can run, so the
    kept configs wait in the run folder; `perf restore RUN` puts them back, and so does the same
    command run again (it resumes, and restores the first run's configs at its end)."""
    before = live(users_triton, "torch_linear")
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "perf", "sweep", "--repo", str(CORPUS), "--url", users_triton.grpc_url, *SWEEP,
            "--out", str(run)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and live(users_triton, "torch_linear") == before:
        time.sleep(0.2)  # until the sweep has changed the server
    assert live(users_triton, "torch_linear") != before, "the sweep never changed the server"
    proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
    output, _ = proc.communicate(timeout=120)
    if how == "SIGTERM":
        assert proc.returncode == 143, output
        assert "restored: torch_linear" in " ".join(output.split()), output
    else:
        assert live(users_triton, "torch_linear") != before, "killed outright: nothing could restore"
        assert restore.kept_files(run), "the configs it found are kept in the run folder"
        again = perf_cli("restore", str(run), timeout=60) if how.endswith("restore") else perf_cli(*argv[3:])
        assert again.returncode == 0, again.stdout + again.stderr
        assert "torch_linear" in again.stdout
    assert live(users_triton, "torch_linear") == before, how
    assert restore.kept_files(run) == []


def test_a_server_not_in_explicit_mode_is_refused(tmp_path: Path) -> None:
    """Triton started with the default model control (none) loads nothing over the API: perf
    says so, and the flag to add, before anything is touched."""
    server = EmbeddedServer(CORPUS, ports=free_ports(), workdir=tmp_path / "none")
    server.start = lambda timeout=120: _start_without_explicit(server, timeout)  # type: ignore[method-assign]
    with server:
        result = perf_cli("sweep", "--repo", str(CORPUS), "--url", server.grpc_url, *SWEEP,
                          "--out", str(tmp_path / "run"), timeout=60)  # fmt: skip
        said = " ".join(result.stdout.split())
        assert result.returncode == 1 and "--model-control-mode=explicit" in said, said
        assert not list((tmp_path / "run").glob("*.csv")) or rows(tmp_path / "run").empty
        with pytest.raises(ServerError, match="explicit"):
            restore.require_explicit(server)


def _start_without_explicit(server: EmbeddedServer, timeout: float) -> None:
    """The embedded server's own command, less its model-control flags: Triton's default."""
    from perf.repository import stage

    tool = find()
    server.workdir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    staged = stage(open_repository(server.repo), server.workdir / "repository", 0, {})  # type: ignore[operator]
    argv = [a for a in server.argv(tool, staged) if not a.startswith(("--load-model", "--model-control-mode"))]
    server._launch(_Process(argv, server.workdir / "triton.log"), timeout, tool.server_env())  # type: ignore[operator]
