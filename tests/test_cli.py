"""The `perf` command as a user runs it: doctor, docker argv, model build and emit, demo."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from perf import modelbuild
from perf.images import CLASSES
from perf.server import DockerServer, Ports

from .conftest import REPO, free_ports, perf_cli


def test_doctor_reports_server_perf_analyzer_backends_gpus_and_ports() -> None:
    out = perf_cli("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())
    for expected in (
        "tritonserver │ ok │ 2.51.0",
        "perf_analyzer │ ok │ 2.51.0",
        "backends │ ok │ python",
        "GPUs",
        "port 8001 (gRPC)",
    ):
        assert expected in text, (expected, out.stdout)


def test_doctor_with_a_missing_tools_folder_names_the_fix(tmp_path: Path) -> None:
    out = perf_cli("doctor", "--tools-dir", str(tmp_path / "none"))
    assert out.returncode == 1
    assert "run `perf setup`" in " ".join(out.stdout.split())


def test_docker_argv_is_a_list_with_gpus_ports_shm_and_the_mounted_repository(tmp_path: Path) -> None:
    server = DockerServer(REPO, ports=Ports(8000, 8001, 8002), gpus=[0, 1], workdir=tmp_path)
    argv = server.prepare()
    repository = tmp_path / "repository"
    assert argv[:3] == ["docker", "run", "--rm"]
    assert argv[argv.index("--gpus") + 1] == '"device=0,1"'
    assert argv[argv.index("--shm-size") + 1] == "1g"
    published = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    assert published == ["127.0.0.1:8000:8000", "127.0.0.1:8001:8001", "127.0.0.1:8002:8002"]
    assert argv[argv.index("-v") + 1] == f"{repository}:/models:ro"
    image = argv.index("nvcr.io/nvidia/tritonserver:24.10-py3")
    script = argv[image + 3]
    # The shell script is fixed; packages and server flags arrive as its arguments.
    assert argv[image + 1 : image + 3] == ["bash", "-c"]
    assert "pip install" in script and "exec tritonserver" in script and "opencv" not in script
    assert argv[image + 5 : image + 8] == ["2", "numpy", "opencv-python-headless"]
    assert "--model-repository=/models" in argv
    # The mounted copy serves the TorchScript model on libtorch; the user's repository is unchanged.
    assert 'platform: "pytorch_libtorch"' in (repository / "classifier" / "config.pbtxt").read_text()
    assert 'backend: "python"' in (REPO / "classifier" / "config.pbtxt").read_text()


def test_docker_single_gpu_and_hostile_repo_path_stay_single_arguments(tmp_path: Path) -> None:
    repo = tmp_path / "my models; rm -rf ~"
    shutil.copytree(REPO, repo)
    server = DockerServer(repo, ports=Ports(9000, 9001, 9002), gpus=[1], workdir=tmp_path / "work $(id)")
    argv = server.prepare()
    assert argv[argv.index("--gpus") + 1] == "device=1"
    assert argv[argv.index("-v") + 1] == f"{tmp_path / 'work $(id)' / 'repository'}:/models:ro"
    assert "--http-port=9000" in argv


def test_serve_print_command_shows_the_docker_command() -> None:
    out = perf_cli("serve", "--mode", "docker", "--gpu", "1", "--print-command")
    assert out.returncode == 0, out.stdout
    argv = shlex.split(out.stdout)
    assert argv[:2] == ["docker", "run"] and "device=1" in argv


def test_model_build_writes_torchscript_and_labels(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    (repo / "classifier" / "1" / "model.pt").unlink()
    result = modelbuild.build(repo, images=40, epochs=1, log=lambda _: None)
    model = torch.jit.load(str(result.path))
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, len(CLASSES))
    assert (repo / "classifier" / "labels.txt").read_text().split() == list(CLASSES)
    # Beside it, the tuned profile's: the same network on uint8 RGB pixels, normalized in its graph.
    pixels_model = torch.jit.load(str(repo / "classifier" / "1" / "model_pixels.pt"))
    pixels = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    preprocess = modelbuild.load_preprocess(repo)
    normalized = (pixels.numpy() * preprocess.SCALE + preprocess.SHIFT).transpose(0, 3, 1, 2)
    expected = model(torch.from_numpy(np.ascontiguousarray(normalized, dtype=np.float32)))
    torch.testing.assert_close(pixels_model(pixels), expected, rtol=1e-4, atol=1e-4)


def test_resnet18_option_has_resnet18_size(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    result = modelbuild.build(repo, arch="resnet18", log=lambda _: None)
    model = torch.jit.load(str(result.path))
    params = sum(p.numel() for p in model.parameters())
    assert 11_000_000 < params < 12_000_000
    assert result.train_accuracy is None


def test_model_build_rejects_an_unknown_architecture() -> None:
    out = perf_cli("model", "build", "--arch", "vgg")
    assert out.returncode == 1
    assert "unknown architecture 'vgg'; choose one of small, resnet18" in out.stdout


def test_model_emit_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    out = perf_cli("model", "emit", str(tmp_path))
    assert out.returncode == 1 and "not empty" in out.stdout
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_demo_prints_classifications_and_a_load_table() -> None:
    ports = free_ports()
    out = perf_cli(
        "demo", "--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
        "--concurrency", "1", "--concurrency", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Fresh images through ensemble_model" in out.stdout
    assert " x" not in out.stdout.split("perf_analyzer on")[0], "every demo image is classified right"
    table = out.stdout.split("perf_analyzer on ensemble_model")[1]
    rows = [line.split("│") for line in table.splitlines() if line.startswith("│")]
    assert [r[1].strip() for r in rows] == ["1", "2"]
    assert all(float(r[2]) > 0 for r in rows)


@pytest.mark.parametrize(("stop_signal", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_demo_stopped_by_a_signal_stops_triton_and_removes_its_files(stop_signal: signal.Signals, code: int) -> None:
    ports = free_ports()
    argv = [sys.executable, "-m", "perf", "demo", "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
            "--metrics-port", str(ports.metrics), "--concurrency", "1", "--measurement-interval", "60000"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "1000"}  # the log's path on one line
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = [proc.stdout.readline()]
        while lines[-1] and "Triton ready" not in lines[-1]:
            lines.append(proc.stdout.readline())
        found = re.search(r"log (\S+triton\.log)\)", lines[-1])
        assert found, "".join(lines)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert any(p.name() == "tritonserver" for p in family)
        proc.send_signal(stop_signal)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code and "Traceback" not in output, output
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family), "nothing left running"
    workdir = Path(found.group(1)).parents[1]
    assert workdir.name.startswith("perf-demo-") and not workdir.exists(), "its temporary files removed"


def test_the_design_cards_sweep_works_as_typed(tmp_path: Path) -> None:
    """No --model, no --values: the repository's top-level model, values from its configs."""
    out = perf_cli("sweep", "--param", "preferred_batch_size", "--dry-run", "--out", str(tmp_path / "run"),
                   cwd=REPO.parent)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())
    assert "Sweep of ensemble_model" in text and "│ [64] │" in text and "8 points, concurrency searched" in text
    assert "+ preferred_batch_size: 2" in text
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["serve", "--mode", "kubernetes"], ["status", "--url", "nonsense"]])
def test_bad_arguments_are_clear_errors(command: list[str]) -> None:
    out = perf_cli(*command)
    assert out.returncode == 1
    assert out.stdout.startswith("error:"), out.stdout
    assert "Traceback" not in out.stdout + out.stderr
