"""The embedded server's life on real sockets: start, stop, failures, reload, `perf serve`."""

from __future__ import annotations

import ipaddress
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from perf import host
from perf.modelconfig import read_config
from perf.repository import RepositoryError
from perf.server import EmbeddedServer, RemoteServer, ServerError

from .conftest import REPO, free_ports, perf_cli, processes_mentioning


def test_start_and_stop_leave_no_process_behind(tmp_path: Path) -> None:
    server = EmbeddedServer(REPO, ports=free_ports(), workdir=tmp_path, models_to_load=["preprocessor"])
    server.start()
    try:
        assert server.is_ready()
        family = psutil.Process(server.pid).children(recursive=True)
        assert any("triton_python_backend_stub" in p.name() for p in family), "the python stub runs"
        assert processes_mentioning(str(tmp_path))
        assert server.host == "127.0.0.1"
        listening = {c.laddr for c in psutil.Process(server.pid).net_connections() if c.status == "LISTEN"}
        addresses = [ipaddress.ip_address(addr.ip) for addr in listening]
        assert len(addresses) >= 3
        loopback = ipaddress.ip_address("127.0.0.1")
        assert all(getattr(a, "ipv4_mapped", None) == loopback or a == loopback for a in addresses), addresses
    finally:
        server.stop()
    assert processes_mentioning(str(tmp_path)) == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)


def test_a_crashed_server_leaves_no_shared_memory_behind(tmp_path: Path) -> None:
    """Triton killed outright (a crash, caused for real) cannot remove its python stubs'
    shared memory regions; perf names them by the server and removes them at its stop, as
    it removes them at every stop (an orderly exit would cost seconds)."""
    server = EmbeddedServer(REPO, ports=free_ports(), workdir=tmp_path, models_to_load=["preprocessor"])
    server.start()

    def regions() -> list[Path]:
        return sorted(Path("/dev/shm").glob(f"{server.shm_prefix}*"))

    try:
        assert regions(), "the python backend names its regions by this server's prefix"
        assert server.pid is not None
        psutil.Process(server.pid).kill()
        psutil.Process(server.pid).wait(10)
        assert regions(), "left by the crash"
    finally:
        server.stop()
    assert regions() == [] and processes_mentioning(str(tmp_path)) == []


def test_a_server_killed_a_moment_ago_is_not_taken_for_alive(tmp_path: Path) -> None:
    """What a sweep asks when a call to Triton failed: once its gRPC port refuses, the server
    is gone, even while its last threads are still ending (a crash to record and survive, not
    an error that ends the sweep; CI once ended one so)."""
    server = EmbeddedServer(REPO, ports=free_ports(), workdir=tmp_path, models_to_load=["preprocessor"])
    server.start()
    try:
        assert server.alive() and server.pid is not None
        psutil.Process(server.pid).kill()
        while _busy(server.ports.grpc):  # the state a failed call finds it in
            time.sleep(0.005)
        assert not server.alive()
    finally:
        server.stop()
    assert processes_mentioning(str(tmp_path)) == []


def test_failed_start_shows_the_log_and_leaves_no_process(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    model_py = repo / "preprocessor" / "1" / "model.py"
    broken = "def initialize(self, args):\n        raise RuntimeError('model initialisation exploded')\n"
    model_py.write_text(
        model_py.read_text().replace("def initialize(self, args):\n", broken + "\n    def _rest(self, args):\n")
    )
    server = EmbeddedServer(repo, ports=free_ports(), workdir=tmp_path / "work")
    with pytest.raises(ServerError) as error:
        server.start(timeout=120)
    assert "model initialisation exploded" in str(error.value)
    assert str(tmp_path / "work" / "triton.log") in str(error.value)
    assert processes_mentioning(str(tmp_path / "work")) == []


def test_a_busy_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    ports = free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports.grpc))
        holder.listen()
        with pytest.raises(ServerError, match=rf"port {ports.grpc} \(gRPC\) on 127.0.0.1 is already in use"):
            EmbeddedServer(REPO, ports=ports, workdir=tmp_path).start()
    assert processes_mentioning(str(tmp_path)) == []


def test_an_unknown_model_is_named_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match=r"'resnet50' is not in .*it has: classifier, ensemble_model"):
        EmbeddedServer(REPO, ports=free_ports(), workdir=tmp_path, models_to_load=["resnet50"]).start()


def test_missing_tools_folder_names_the_fix(tmp_path: Path) -> None:
    server = EmbeddedServer(REPO, ports=free_ports(), workdir=tmp_path, tools_dir=tmp_path / "no-tools")
    with pytest.raises(Exception, match=r"not installed in .*no-tools.*Run `perf setup`"):
        server.start()


def test_models_are_listed_and_ready(server: EmbeddedServer) -> None:
    states = {m.name: m.state for m in server.models()}
    assert states == {"classifier": "READY", "ensemble_model": "READY", "preprocessor": "READY"}


def test_configs_are_adapted_to_a_host_without_gpu(server: EmbeddedServer) -> None:
    if host.gpus():
        pytest.skip("this host has a GPU")
    live = server.model_config("classifier").instance_group[0]
    assert (live.count, "KIND_CPU") == (2, live.Kind.Name(live.kind))


def test_unknown_model_on_a_running_server_is_a_clear_error(server: EmbeddedServer) -> None:
    with pytest.raises(ServerError, match="resnet50"):
        server.load_model("resnet50")


def test_reload_with_a_new_config_without_restart(tmp_path: Path) -> None:
    with EmbeddedServer(REPO, ports=free_ports(), workdir=tmp_path, models_to_load=["preprocessor"]) as server:
        pid = server.pid
        config = server.model_config("preprocessor")
        config.dynamic_batching.max_queue_delay_microseconds = 2500
        config.instance_group[0].count = 2
        server.load_model("preprocessor", config)
        live = server.model_config("preprocessor")
        assert live.dynamic_batching.max_queue_delay_microseconds == 2500
        assert live.instance_group[0].count == 2
        assert server.pid == pid
        # The repository on disk is untouched by a reload.
        assert read_config(REPO / "preprocessor" / "config.pbtxt").dynamic_batching.max_queue_delay_microseconds == 100


SELF_COMPLETING = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [4]})
        config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [4]})
        return config

    def execute(self, requests):
        tensors = [pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() for r in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", t)]) for t in tensors]
"""


def test_auto_complete_is_skipped_only_where_no_model_needs_it(tmp_path: Path) -> None:
    """The reference repository's models declare everything: the server skips auto-complete
    (a stub per load, only to ask). A python model that completes its own config still gets
    its inputs from it, beside the reference models."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("classifier", "ensemble_model"))
    (repo / "echo" / "1").mkdir(parents=True)
    (repo / "echo" / "config.pbtxt").write_text('name: "echo"\nbackend: "python"\n')
    (repo / "echo" / "1" / "model.py").write_text(SELF_COMPLETING)
    reference = EmbeddedServer(REPO, ports=free_ports(), workdir=tmp_path / "ref", models_to_load=["preprocessor"])
    with reference:
        assert "--disable-auto-complete-config" in psutil.Process(reference.pid).cmdline()
        assert reference.model_config("preprocessor").input[0].name == "RAW_IMAGE"
    with EmbeddedServer(repo, ports=free_ports(), workdir=tmp_path / "work") as server:
        assert "--disable-auto-complete-config" not in psutil.Process(server.pid).cmdline()
        assert [i.name for i in server.model_config("echo").input] == ["IN"]


def test_remote_attaches_and_never_stops_the_server(server: EmbeddedServer) -> None:
    remote = RemoteServer.from_url(server.grpc_url)
    with remote:
        assert {m.name for m in remote.models()} == {"classifier", "ensemble_model", "preprocessor"}
    assert server.is_ready()


def test_remote_with_nothing_there_is_a_clear_error() -> None:
    (port,) = host.free_ports(1)
    with pytest.raises(ServerError, match=f"no ready Triton server at 127.0.0.1:{port}"):
        RemoteServer.from_url(f"127.0.0.1:{port}").start(timeout=2)


def test_perf_status_lists_models(server: EmbeddedServer) -> None:
    out = perf_cli("status", "--url", server.grpc_url)
    assert out.returncode == 0, out.stderr
    for name in ("classifier", "ensemble_model", "preprocessor"):
        assert name in out.stdout
    assert out.stdout.count("READY") == 3


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_perf_serve_runs_until_signalled_then_stops_triton(stop_signal: signal.Signals) -> None:
    ports = free_ports()
    argv = [sys.executable, "-m", "perf", "serve", "--model", "preprocessor", "--http-port", str(ports.http),
            "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C to stop" in line or not line:
                break
        assert "Triton ready" in "".join(lines), "".join(lines)
        remote = RemoteServer.from_url(f"127.0.0.1:{ports.grpc}")
        assert remote.is_ready()
        triton = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(stop_signal)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert not remote.is_ready()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in triton)


def test_perf_serve_on_a_busy_port_exits_with_the_reason() -> None:
    ports = free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports.http))
        holder.listen()
        out = perf_cli("serve", "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
                       "--metrics-port", str(ports.metrics))  # fmt: skip
    assert out.returncode == 1
    assert f"port {ports.http} (HTTP)" in out.stdout and "already in use" in out.stdout


def _busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_deployment_guides_debugging_curls_work_against_perf_serve_as_written() -> None:
    """The guide's tips, typed as it prints them, against `perf serve` on its default ports."""
    if busy := [port for port in (8000, 8001, 8002) if _busy(port)]:
        pytest.skip(f"ports {busy} are taken on this machine: the guide's commands name 8000")
    proc = subprocess.Popen([sys.executable, "-m", "perf", "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        lines = []
        while line := proc.stdout.readline():
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        assert "Triton ready" in "".join(lines), "".join(lines)
        status = ["-s", "-o", "/dev/null", "-w", "%{http_code}"]  # its answer is an empty 200
        ready = subprocess.run(["curl", *status, "localhost:8000/v2/health/ready"], capture_output=True, text=True,
                               timeout=30)  # fmt: skip
        assert ready.stdout == "200", "the guide's `curl localhost:8000/v2/health/ready`, with its status shown"
        config = subprocess.run(["curl", "localhost:8000/v2/models/ensemble_model/config"], capture_output=True,
                                text=True, timeout=30)  # fmt: skip
        assert config.returncode == 0 and '"name":"ensemble_model"' in config.stdout, config.stdout[:500]
        assert '"platform":"ensemble"' in config.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert not _busy(8000), "perf serve stopped Triton"
