"""What the server says about itself over a measurement window: Triton's statistics per model,
the CPU and memory of its whole process tree (python stubs included), GPU metrics."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from perf.server import TritonServer

# Triton's cumulative duration counters (ns) that make up a request's time in a model.
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")
_GPU_METRICS = {"nv_gpu_utilization": "gpu_util", "nv_gpu_memory_used_bytes": "gpu_memory_mb"}


def snapshot(server: TritonServer, models: list[str]) -> dict[str, dict[str, int]]:
    """Cumulative counters per model (all versions summed)."""
    counters: dict[str, dict[str, int]] = {}
    for model in models:
        total = dict.fromkeys(["success", "fail", "inferences", "executions", "responses", *PHASES], 0)
        for stats in server.statistics(model):
            inference = stats.get("inference_stats", {})
            total["success"] += int(inference.get("success", {}).get("count", 0))
            total["fail"] += int(inference.get("fail", {}).get("count", 0))
            total["inferences"] += int(stats.get("inference_count", 0))
            total["executions"] += int(stats.get("execution_count", 0))
            # A decoupled model's responses, counted by their index within a request.
            total["responses"] += sum(int(r.get("success", {}).get("count", 0))
                                      for r in stats.get("response_stats", {}).values())  # fmt: skip
            for phase in PHASES:
                total[phase] += int(inference.get(phase, {}).get("ns", 0))
        counters[model] = total
    return counters


def breakdown(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, float | None]:
    """Per model over the window: requests, failures, mean ms per phase, and the mean batch
    Triton executed (inferences per execution; the python backend counts each request as
    its own execution, so it reads 1 there whatever the batcher did)."""
    row: dict[str, float | None] = {}
    for model, end in after.items():
        start = before.get(model, dict.fromkeys(end, 0))
        delta = {k: end[k] - start.get(k, 0) for k in end}
        requests = delta["success"] + delta["fail"]
        row[f"{model}.requests"] = requests
        row[f"{model}.failures"] = delta["fail"]
        for phase in PHASES:
            row[f"{model}.{phase}_ms"] = delta[phase] / requests / 1e6 if requests else None
        executions = delta["executions"]
        row[f"{model}.batch_size"] = delta["inferences"] / executions if executions else None
    return row


def stage_times(row: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each model's mean queue and compute ms from a row's breakdown columns, where both are
    known: where a request waited, for strategies that act on the bottleneck."""
    times = {}
    for key in row:
        if str(key).endswith(".queue_ms"):
            model = str(key).removesuffix(".queue_ms")
            values = [row.get(f"{model}.{phase}_ms") for phase in PHASES]
            if all(v not in (None, "") and not math.isnan(float(v)) for v in values):
                queue, *compute = map(float, values)
                times[model] = (queue, sum(compute))
    return times


def breakdown_columns(models: list[str]) -> list[str]:
    return [
        f"{m}.{name}" for m in models for name in ("requests", "failures", *(f"{p}_ms" for p in PHASES), "batch_size")
    ]


RESOURCE_COLUMNS = ["server_cpu_percent", "server_rss_mb", "gpu_util", "gpu_memory_mb"]


def tree_rss_mb(pid: int | None) -> float:
    """The resident memory of a process and all its children, in MiB (0 where it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


@dataclass
class ResourceSampler:
    """Samples, in a thread, the server's process tree (CPU as percent of one core, summed
    over processes; resident memory summed) and, where there are GPUs, Triton's GPU metrics."""

    pid: int | None
    metrics_url: str | None = None
    interval: float = 0.5
    # Where set, the memory counted is the server's own private memory (its shared pages hold the
    # python backend's regions of every config loaded: they grew 614 to 2,800 MB over a sweep of
    # eight) and the python stubs serving these models (by the model folder in the stub's
    # command line): one config of several loaded.
    models: frozenset[str] | None = None
    _cpu: list[float] = field(default_factory=list)
    _rss: list[float] = field(default_factory=list)
    _gpu: dict[str, list[float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _seen: dict[int, psutil.Process] = field(default_factory=dict)

    def __enter__(self) -> ResourceSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        procs = [root, *root.children(recursive=True)]
        # Keep each Process object: cpu_percent() measures since its own previous call.
        return [self._seen.setdefault(p.pid, p) for p in procs]

    def _run(self) -> None:
        if self.pid is not None:
            try:
                for proc in self._tree():
                    proc.cpu_percent(None)
            except psutil.Error:
                pass
        while not self._stop.wait(self.interval):
            if self.pid is not None:
                self._sample_tree()
            if self.metrics_url:
                self._sample_gpu()

    def _sample_tree(self) -> None:
        cpu = rss = 0.0
        try:
            for proc in self._tree():
                try:
                    cpu += proc.cpu_percent(None)
                    if self.models is None or stub_model(proc) in self.models:
                        rss += proc.memory_info().rss
                    elif proc.pid == self.pid:  # its private memory: the shared pages are every copy's tensors
                        info = proc.memory_info()
                        rss += info.rss - info.shared
                except psutil.Error:
                    continue
        except psutil.Error:
            return
        self._cpu.append(cpu)
        self._rss.append(rss / 2**20)

    def _sample_gpu(self) -> None:
        try:
            text = httpx.get(self.metrics_url, timeout=2).text
        except httpx.HTTPError:
            return
        for metric, values in parse_gpu_metrics(text).items():
            self._gpu.setdefault(metric, []).append(values)

    def result(self) -> dict[str, float | None]:
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        return {
            # The first samples include start-up of the window; the mean is over all of them.
            "server_cpu_percent": mean(self._cpu),
            "server_rss_mb": max(self._rss) if self._rss else None,
            "gpu_util": mean(self._gpu.get("gpu_util", [])),
            "gpu_memory_mb": max(self._gpu["gpu_memory_mb"]) if self._gpu.get("gpu_memory_mb") else None,
        }


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user and system) a server's process tree has used so far, by process: each
    python stub under the model it serves, the server and any other child as ``tritonserver``.
    Two readings apart say where a window's CPU went; a process that exited between them is
    missing from the second."""
    used: dict[str, float] = {}
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = stub_model(proc) or "tritonserver"
            times = proc.cpu_times()
        except psutil.Error:
            continue
        used[name] = used.get(name, 0.0) + times.user + times.system
    return used


def stub_model(proc: psutil.Process) -> str | None:
    """The model a python-backend stub serves: the folder of the model file it was started
    with (``.../repository/MODEL/1/model.py``); None for any other process."""
    if not proc.name().startswith("triton_python"):
        return None
    argv = proc.cmdline()
    return Path(argv[1]).parent.parent.name if len(argv) > 1 else None


_SAMPLE = re.compile(r"^(\w+)(?:\{[^}]*\})?\s+([0-9.eE+-]+)$")


def parse_gpu_metrics(text: str) -> dict[str, float]:
    """Triton's Prometheus text to GPU figures summed over GPUs: utilization as percent
    (Triton reports 0 to 1 per GPU, averaged here) and memory used in MiB."""
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match and match.group(1) in _GPU_METRICS:
            found.setdefault(_GPU_METRICS[match.group(1)], []).append(float(match.group(2)))
    result = {}
    if util := found.get("gpu_util"):
        result["gpu_util"] = 100 * sum(util) / len(util)
    if memory := found.get("gpu_memory_mb"):
        result["gpu_memory_mb"] = sum(memory) / 2**20
    return result
