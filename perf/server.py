"""Triton's life: an embedded server, NVIDIA's container, or a server already running.

All three read the same way (``with server:``; ready, load a model with a config, statistics),
so the rest of perf never asks which one it has.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psutil
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from perf import host, tools
from perf.modelconfig import ModelConfig, from_json, to_json
from perf.repository import Repository, auto_completed, emit_libtorch, open_repository, stage

LOCALHOST = "127.0.0.1"
SHM = "/dev/shm"  # where POSIX shared memory lives on Linux
DOCKER_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51.0, as embedded
# What the python-backend models import inside NVIDIA's container (the seed's list, less
# torchvision: the classifier runs on libtorch there).
DOCKER_PIP_PACKAGES = ("numpy", "opencv-python-headless")


# glog lines of severity E, and those that every start without a GPU prints.
_ERROR_LINE = re.compile(r"^E\d{4} ")
_LOG_NOISE = ("CudaDriverHelper", "NVML", "DCGM", "GPU metrics", "Unable to get", "cudaGetDeviceCount")


class ServerError(RuntimeError):
    """Triton did not start, stopped, or refused a request; the message says why."""


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    def named(self) -> dict[str, int]:
        return {"HTTP": self.http, "gRPC": self.grpc, "metrics": self.metrics}


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    state: str
    reason: str


def python_stubs(pid: int) -> int:
    """The python backend's stub processes under the server: one per model instance it serves,
    and those of replaced instances until they have exited."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0
    count = 0
    for child in children:
        with contextlib.suppress(psutil.Error):
            count += child.name().startswith("triton_python")
    return count


class TritonServer(ABC):
    """A Triton server perf can talk to over gRPC."""

    host: str
    ports: Ports

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    @abstractmethod
    def start(self, timeout: float = 120) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def alive(self) -> bool:
        """Whether the server is still there (a launched one: its process runs)."""
        return self.is_ready()

    @property
    def pid(self) -> int | None:
        """The server's process, where perf launched it."""
        return None

    def settle(self, instances: int, timeout: float = 15) -> None:
        """Wait until the python stubs of the instances a reload replaced have exited, leaving
        the ``instances`` the live configs have. Triton answers a load before they are gone; they
        exit over the next 1 to 4 s, using CPU a measurement would otherwise have (11 % of the
        ensemble's throughput here) and memory the sampler would count. A server perf did not
        start cannot be watched: no wait."""
        if self.pid is None:
            return
        deadline = time.monotonic() + timeout
        while python_stubs(self.pid) > instances and time.monotonic() < deadline:
            time.sleep(0.1)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(self.grpc_url)

    def is_ready(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.is_server_ready(client_timeout=2))
        except InferenceServerException:
            return False

    def models(self) -> list[ModelState]:
        """Every model of the repository and its state (READY, UNAVAILABLE, ...)."""
        with self.client() as client:
            index = self._call(client.get_model_repository_index, as_json=True).get("models", [])
        return [ModelState(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", "")) for m in index]

    def model_config(self, name: str) -> ModelConfig:
        with self.client() as client:
            return from_json(self._call(client.get_model_config, name, as_json=True)["config"])

    def load_model(self, name: str, config: ModelConfig | None = None) -> None:
        """(Re)load ``name``, with ``config`` overriding its config.pbtxt if given."""
        with self.client() as client:
            self._call(client.load_model, name, config=None if config is None else to_json(config))

    def unload_model(self, name: str) -> None:
        with self.client() as client:
            self._call(client.unload_model, name)

    def statistics(self, name: str = "") -> list[dict]:
        """Triton's cumulative inference statistics, per model (all models when no name)."""
        with self.client() as client:
            return self._call(client.get_inference_statistics, name, as_json=True).get("model_stats", [])

    def _listening(self) -> bool:
        return True

    @staticmethod
    def _call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Triton's refusal as a ServerError carrying Triton's own message."""
        try:
            return method(*args, **kwargs)
        except InferenceServerException as error:
            raise ServerError(error.message() or str(error)) from None

    def wait_ready(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_ready() and self._listening():
                return
            if not alive():
                raise ServerError("exited")
            time.sleep(0.2)
        raise ServerError(f"not ready after {timeout:.0f} s")


def _check_ports(host_: str, ports: Ports) -> None:
    busy = [f"{port} ({label})" for label, port in ports.named().items() if not host.port_free(host_, port)]
    if busy:
        raise ServerError(
            f"port {', '.join(busy)} on {host_} is already in use: stop what holds it "
            "or choose other ports (--http-port, --grpc-port, --metrics-port)"
        )


def _process_tree_stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, for the process and every descendant,
    python stubs included (they outlive a killed server otherwise); with no grace, SIGKILL
    for all at once."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if not grace:
        for member in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM if grace else signal.SIGKILL)
        try:
            proc.wait(grace or None)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _gone, alive = psutil.wait_procs(family, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=5)


@dataclass
class _Process:
    """A launched server process and where its log goes."""

    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def launch(self, env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.kill_stragglers()  # of an earlier server in the same folder that was killed outright
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                # SIGTERM, not SIGKILL, when perf dies: Triton then stops its python stubs on its way out.
                host.die_with_parent(self.argv, signal.SIGTERM),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches perf, which stops Triton in order
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exits_within(self, seconds: float) -> bool:
        assert self.proc is not None
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_summary(self, errors: int = 4, tail: int = 3) -> str:
        """Triton's error lines (the cause is rarely in the last lines: shutdown follows it),
        then the log's last lines."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        found: list[str] = []
        for line in lines:
            if _ERROR_LINE.match(line) and not any(noise in line for noise in _LOG_NOISE):
                message = line.split("] ", 1)[-1].split("\\n\\nAt:", 1)[0]
                if message not in found:
                    found.append(message)
        return "\n".join([*found[-errors:], *lines[-tail:]])

    def stop(self, grace: float) -> None:
        if self.proc is not None:
            _process_tree_stop(self.proc, grace)
            self.proc = None
        self.kill_stragglers()

    def kill_stragglers(self) -> None:
        """A server killed outright leaves its python stubs to init, out of reach of the tree
        walk; their command lines name the staged repository in this work folder."""
        workdir = str(self.log_path.parent) + os.sep
        stragglers = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.pid != os.getpid() and any(workdir in arg for arg in proc.info["cmdline"] or []):
                    proc.kill()
                    stragglers.append(proc)
        psutil.wait_procs(stragglers, timeout=5)


class _LaunchedServer(TritonServer):
    """A server process perf starts and stops itself."""

    _process: _Process | None = None

    @property
    def log_path(self) -> Path | None:
        return self._process.log_path if self._process else None

    @property
    def pid(self) -> int | None:
        return self._process.proc.pid if self._process and self._process.proc else None

    def alive(self) -> bool:
        """Whether its process runs. Asked after an error: a server killed a moment ago closes
        its sockets before its last threads end, and a dying server taken for a live one turns
        a crash perf would record and survive into an error that ends the sweep. So a process
        whose gRPC port refuses is given a few seconds to finish exiting."""
        if self._process is None or not self._process.alive():
            return False
        return host.port_open(self.host, self.ports.grpc) or not self._process.exits_within(5)

    def log_summary(self) -> str:
        return self._process.log_summary() if self._process else "(not started)"

    def _listening(self) -> bool:
        """Triton reports ready over gRPC before its HTTP and metrics services listen."""
        return all(host.port_open(self.host, port) for port in self.ports.named().values())

    def _launch(self, process: _Process, timeout: float, env: dict[str, str] | None = None) -> None:
        _check_ports(self.host, self.ports)
        self._process = process
        process.launch(env)
        try:
            self.wait_ready(timeout, process.alive)
        except ServerError as error:
            summary = process.log_summary()
            self.stop()
            raise ServerError(f"Triton {error} (log: {process.log_path}):\n{summary}") from None

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(grace=30)


@dataclass
class EmbeddedServer(_LaunchedServer):
    """The tritonserver binary installed by ``perf setup``, serving a staged copy of ``repo``.

    Explicit model control, so a model can be reloaded with a new config without a restart.
    ``models_to_load`` limits what loads at start (all by default); ``profile`` serves each
    model's configs/PROFILE.pbtxt where it has one; ``overrides`` replace config.pbtxt files
    in the staged copy (a sweep's restart mode).
    """

    repo: Path
    host: str = LOCALHOST
    ports: Ports = field(default_factory=Ports)
    workdir: Path | None = None
    models_to_load: list[str] | None = None
    tools_dir: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    overrides: dict[str, ModelConfig] = field(default_factory=dict, repr=False)
    profile: str | None = None  # serve MODEL/configs/PROFILE.pbtxt where a model has one
    staged: Repository | None = field(default=None, init=False, repr=False)
    # the python backend's shared memory regions are named by it: this server's stop removes them
    shm_prefix: str = field(default_factory=lambda: f"perf_{uuid.uuid4().hex[:12]}_", init=False, repr=False)

    def argv(self, tool: tools.Tools, repository: Repository) -> list[str]:
        loads = self.models_to_load if self.models_to_load is not None else ["*"]
        return [
            str(tool.tritonserver),
            f"--model-repository={repository.path}",
            f"--backend-directory={tool.backends}",
            f"--cache-directory={tool.caches}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--model-control-mode=explicit",
            *[f"--load-model={name}" for name in loads],
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
            *([] if auto_completed(repository) else ["--disable-auto-complete-config"]),
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *self.extra_args,
        ]

    def start(self, timeout: float = 120) -> None:
        tool = tools.find(self.tools_dir)
        source = open_repository(self.repo, self.profile)
        if self.models_to_load:
            source.require(self.models_to_load)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="perf-triton-"))
        self.staged = stage(source, self.workdir / "repository", len(host.gpus()), self.overrides)
        process = _Process(self.argv(tool, self.staged), self.workdir / "triton.log")
        self._launch(process, timeout, tool.server_env())

    def stop(self) -> None:
        """Killed outright: the server and its staged repository are perf's own, and an orderly
        exit finalizes the python instances one after another, 1.5 s each (6 s at the end of a
        sweep of five configs side by side). The shared memory the python backend would have
        removed on its way out is removed here, by this server's prefix: so too after a crash."""
        if self._process is not None:
            self._process.stop(grace=0)
        for region in Path(SHM).glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)


@dataclass
class DockerServer(_LaunchedServer):
    """NVIDIA's container with ``repo`` mounted, its TorchScript models on libtorch.

    The command is an argv list: the image's shell runs a fixed script, and every value
    (packages, server flags) reaches it as an argument, never pasted into the script.
    """

    repo: Path
    host: str = LOCALHOST
    ports: Ports = field(default_factory=Ports)
    gpus: list[int] | None = None
    image: str = DOCKER_IMAGE
    shm_size: str = "1g"
    workdir: Path | None = None
    pip_packages: tuple[str, ...] = DOCKER_PIP_PACKAGES
    profile: str | None = None  # written as config.pbtxt into the served copy

    def argv(self, repository: Path) -> list[str]:
        gpu_args = []
        if self.gpus is None:
            gpu_args = ["--gpus", "all"]
        elif self.gpus:
            devices = ",".join(str(g) for g in self.gpus)
            # Docker reads --gpus as CSV: a list of devices must be quoted inside the value.
            gpu_args = ["--gpus", f'"device={devices}"' if len(self.gpus) > 1 else f"device={devices}"]
        publish = [arg for port in self.ports.named().values() for arg in ("-p", f"{self.host}:{port}:{port}")]
        script = 'n=$1; shift; pip install --quiet "${@:1:$n}" && shift "$n" && exec tritonserver "$@"'
        return [
            "docker", "run", "--rm", *gpu_args, "--shm-size", self.shm_size, *publish,
            "-v", f"{repository}:/models:ro",
            self.image,
            "bash", "-c", script, "perf-triton", str(len(self.pip_packages)), *self.pip_packages,
            "--model-repository=/models",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--model-control-mode=explicit",
            "--load-model=*",
        ]  # fmt: skip

    def prepare(self) -> list[str]:
        """Write the libtorch copy of the repository and return the command that serves it."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="perf-docker-"))
        emitted = emit_libtorch(open_repository(self.repo, self.profile), self.workdir / "repository")
        return self.argv(emitted.path)

    def start(self, timeout: float = 600) -> None:
        if shutil.which("docker") is None:
            raise ServerError("docker is not installed: install Docker, or use --mode embedded")
        argv = self.prepare()
        assert self.workdir is not None
        self._launch(_Process(argv, self.workdir / "docker.log"), timeout)


# Starts a server of perf's own that serves these configs in place of the repository's (none:
# the repository as it is), for a sweep to start, restart and replace after a crash.
Launcher = Callable[[dict[str, ModelConfig]], TritonServer]


def embedded_launcher(repo: Path, workdir: Path, models: list[str], profile: str | None = None) -> Launcher:
    """Embedded servers of ``models``, each on fresh free loopback ports, in ``workdir``."""
    return lambda overrides: EmbeddedServer(repo, workdir=workdir, ports=Ports(*host.free_ports(3)),
                                            models_to_load=models, overrides=overrides, profile=profile)  # fmt: skip


@dataclass
class RemoteServer(TritonServer):
    """A server someone else runs: perf attaches by address and never stops it."""

    host: str = LOCALHOST
    ports: Ports = field(default_factory=Ports)

    @classmethod
    def from_url(cls, grpc_url: str, http_port: int = 8000, metrics_port: int = 8002) -> RemoteServer:
        address = grpc_url.split("://", 1)[-1]
        hostname, _, port = address.rpartition(":")
        if not hostname or not port.isdigit():
            raise ServerError(f"{grpc_url!r} is not HOST:GRPC_PORT (for example 127.0.0.1:8001)")
        return cls(hostname, Ports(http=http_port, grpc=int(port), metrics=metrics_port))

    def start(self, timeout: float = 10) -> None:
        try:
            self.wait_ready(timeout)
        except ServerError:
            raise ServerError(f"no ready Triton server at {self.grpc_url} (gRPC)") from None

    def stop(self) -> None:
        """Detach; the server is not ours to stop."""
