"""The sweep loop: apply each point, load it at every level, observe, record a row.

Faults are rows too: a variant Triton refuses, a server that dies mid-point, a measurement
that fails. The loop records them and goes on; Ctrl-C stops it with what finished recorded,
and the same command later resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf import __version__, host, params, tools
from perf.drivers import Driver, DriverError
from perf.drivers.locust import Locust
from perf.drivers.perf_analyzer import LATENCY_COLUMNS, PerfAnalyzer, write_input_data
from perf.images import image_files, synthetic_set
from perf.modelconfig import ModelConfig
from perf.observe import RESOURCE_COLUMNS, ResourceSampler, breakdown, breakdown_columns, snapshot
from perf.plan import Plan, Point
from perf.results import RunFolder
from perf.server import EmbeddedServer, Ports, ServerError, TritonServer

# Rows' status: measured; Triton refused the variant; the server died; the measurement failed.
OK, REFUSED, CRASHED, FAILED = "ok", "refused", "crashed", "failed"
TYPE_UINT8 = 2  # DataType.TYPE_UINT8: a model that takes encoded images


class SweepError(RuntimeError):
    """The sweep cannot go on (not a fault of one point)."""


@dataclass(frozen=True)
class LoadSpec:
    """How every point is loaded and measured."""

    kind: str = "concurrency"  # or "request_rate"
    levels: tuple[float, ...] = (1, 2, 4)
    repeats: int = 1
    batch_size: int = 1
    window_ms: int = 2000
    window_requests: int | None = None  # count windows instead of time windows
    stability_percentage: int = 10
    max_trials: int = 10
    images: Path | None = None  # a folder of JPEG/PNG; None: a generated set
    driver: str = "perf_analyzer"  # or "locust" (see perf.drivers)

    def level_label(self, level: float) -> str:
        return f"{level:g}"


def columns(plan: Plan) -> list[str]:
    """The table's columns, fixed by the plan: one per variable."""
    return [
        "point_id", "point", "is_baseline", *(p.column for p in plan.params),
        "load_kind", "load_level", "repeat", "status", "error",
        "throughput", *LATENCY_COLUMNS.values(),
        *breakdown_columns(plan.models), *RESOURCE_COLUMNS,
        "apply", "apply_s", "started_at", "duration_s",
    ]  # fmt: skip


def plan_record(plan: Plan, load: LoadSpec, apply: str, profile: str | None = None) -> dict[str, Any]:
    """What identifies a run: resuming requires the same record."""
    return {
        "model": plan.model,
        **({"profile": profile} if profile else {}),
        "params": {p.column: list(p.values) for p in plan.params},
        "points": [p.id for p in plan.points],
        "load": {
            "kind": load.kind, "levels": list(load.levels), "repeats": load.repeats, "batch_size": load.batch_size,
            "window_ms": load.window_ms, "window_requests": load.window_requests,
            "stability_percentage": load.stability_percentage,
            "max_trials": load.max_trials, "images": str(load.images) if load.images else None,
            "driver": load.driver,
        },
        "apply": apply,
    }  # fmt: skip


@dataclass
class Sweep:
    """One sweep's run: the plan, where it records, and the server it drives."""

    plan: Plan
    load: LoadSpec
    folder: RunFolder
    repo: Path
    apply: str = "reload"
    server: TritonServer | None = None  # a remote server; None: perf runs an embedded one
    slo_p99_ms: float | None = None  # recorded for reports; the sweep measures every point anyway
    profile: str | None = None  # the repository's configs/PROFILE.pbtxt are the baseline
    progress: Callable[[int, int, str], None] = lambda done, total, what: None

    def __post_init__(self) -> None:
        self.tools = tools.find()
        self._own_server = self.server is None

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        done = self.folder.done(statuses=(OK, REFUSED, CRASHED))  # a failed measurement is tried again
        todo = [(p, lvl, r) for p, lvl, r in self._measurements() if (p.id, self.load.level_label(lvl), r) not in done]
        total = len(self.plan.points) * len(self.load.levels) * self.load.repeats
        count = total - len(todo)
        self.progress(count, total, "resuming" if count else "starting")
        metadata = self._metadata(status="running")
        self.folder.write_metadata(metadata)  # a run killed outright still says what it was
        try:
            for point in self.plan.points:
                self.folder.write_configs(point.id, self.plan.configs_of(point))
            for point in self.plan.points:
                work = [(lvl, r) for p, lvl, r in todo if p.id == point.id]
                if not work:
                    continue
                count = self._run_point(point, work, count, total)
            metadata["status"] = "finished"
        except KeyboardInterrupt:
            metadata["status"] = "interrupted"
            raise
        finally:
            metadata["finished_at"] = _now()
            self.folder.write_metadata(metadata)
            if self._own_server and self.server is not None:
                self.server.stop()
                self.server = None

    def _measurements(self) -> Iterator[tuple[Point, float, int]]:
        for point in self.plan.points:
            for level in self.load.levels:
                for repeat in range(self.load.repeats):
                    yield point, level, repeat

    def _run_point(self, point: Point, work: list[tuple[float, int]], count: int, total: int) -> int:
        started = time.perf_counter()
        try:
            self._apply(point)
        except ServerError as error:
            crashed = self.server is not None and not self.server.alive()
            status, message = (
                (CRASHED, f"{error}; Triton exited: {self._log_summary()}") if crashed else (REFUSED, str(error))
            )
            for level, repeat in work:
                self._record(point, level, repeat, status, message)
                count += 1
                self.progress(count, total, f"{point.id} {status}")
            if crashed:
                self._recover(None)
            return count
        apply_s = time.perf_counter() - started
        driver = self._driver()
        driver.warm_up(work[0][0], self.load.kind)
        for level, repeat in work:
            self.progress(count, total, f"point {self.plan.points.index(point) + 1}/{len(self.plan.points)} "
                                        f"{self.load.kind} {level:g} repeat {repeat + 1}")  # fmt: skip
            self._measure(point, level, repeat, driver, apply_s)
            count += 1
            self.progress(count, total, "")
        return count

    # -- apply ---------------------------------------------------------------------------

    def _apply(self, point: Point) -> None:
        configs = self.plan.configs_of(point)
        if self.apply == "restart" or self.server is None:
            self._restart(configs)
        else:
            for model, config in configs.items():
                self.server.load_model(model, config)
        self._verify(configs)

    def _restart(self, configs: dict[str, ModelConfig]) -> None:
        if not self._own_server:
            if self.apply == "restart":
                raise SweepError("--apply restart needs a server perf starts itself (not --url)")
            return
        if self.server is not None:
            self.server.stop()
        self.server = EmbeddedServer(
            self.repo,
            workdir=self.folder.path / "server",
            ports=Ports(*host.free_ports(3)),
            models_to_load=self.plan.models,
            overrides=configs if self.apply == "restart" else {},
            profile=self.profile,
        )
        self.server.start()
        if self.apply == "reload":
            for model, config in configs.items():
                self.server.load_model(model, config)

    def _verify(self, configs: dict[str, ModelConfig]) -> None:
        """The live config must say what was intended; Triton fills defaults silently."""
        assert self.server is not None
        for model, intended in configs.items():
            live = self.server.model_config(model)
            paths = [p.path for p in self.plan.params if p.model == model] + ["max_batch_size"]
            # A value left at its default ([], 0, false) is Triton's to fill (an empty
            # preferred_batch_size reads back as [max_batch_size]).
            wrong = [
                f"{path}: live {params.read(live, path)!r}, intended {params.read(intended, path)!r}"
                for path in paths
                if params.read(intended, path) not in ([], 0, False, "", None)
                and params.read(live, path) != params.read(intended, path)
            ]
            if wrong:
                raise ServerError(f"{model} is not serving the intended config ({'; '.join(wrong)})")

    # -- load and observe ----------------------------------------------------------------

    def _driver(self) -> Driver:
        assert self.server is not None
        if self.load.driver == "locust":
            if self._input_data() is None:
                raise SweepError(f"--driver locust sends encoded images: {self.plan.model} does not take them")
            return Locust(self.server.grpc_url, self.plan.model, self.load.images, self.load.batch_size,
                          self.load.window_ms)  # fmt: skip
        return PerfAnalyzer(
            self.tools,
            self.server.grpc_url,
            self.plan.model,
            self._input_data(),
            batch_size=self.load.batch_size,
            measurement_interval_ms=self.load.window_ms,
            measurement_requests=self.load.window_requests,
            stability_percentage=self.load.stability_percentage,
            max_trials=self.load.max_trials,
        )

    def _input_data(self) -> Path | None:
        config = self.plan.baseline[self.plan.model]
        takes_images = len(config.input) == 1 and config.input[0].data_type == TYPE_UINT8
        if not takes_images:
            if self.load.images:
                raise SweepError(f"--images: {self.plan.model} does not take encoded images (its input is not UINT8)")
            return None
        path = self.folder.path / "input.json"
        if not path.is_file():
            if self.load.images:
                blobs = [f.read_bytes() for f in image_files(self.load.images)]
            else:
                blobs, _ = synthetic_set(32, seed=0)  # 640x480 JPEGs, as a camera sends them
            write_input_data(blobs, path, config.input[0].name)
        return path

    def _measure(self, point: Point, level: float, repeat: int, driver: Driver, apply_s: float) -> None:
        assert self.server is not None
        started_at, started = _now(), time.perf_counter()
        before = snapshot(self.server, self.plan.models)
        sampler = ResourceSampler(self.server.pid, self.server.metrics_url if host.gpus() else None)
        try:
            with sampler:
                measured = driver.run(level, self.load.kind)
        except DriverError as error:
            if self.server.alive():
                self._record(point, level, repeat, FAILED, str(error), started_at=started_at)
                return
            crash = f"{error}; Triton exited: {self._log_summary()}"
            self._record(point, level, repeat, CRASHED, crash, started_at=started_at)
            self._recover(point)
            return
        after = snapshot(self.server, self.plan.models)
        row = {
            **{k: v for k, v in measured.items() if k not in ("concurrency", "request_rate")},
            **breakdown(before, after),
            **sampler.result(),
            "apply_s": round(apply_s, 3),
            "duration_s": round(time.perf_counter() - started, 3),
        }
        self._record(point, level, repeat, OK, "", started_at=started_at, **row)

    def _recover(self, point: Point | None) -> None:
        """After a crash: a fresh server (with ``point`` applied, to finish its levels), so the
        sweep goes on."""
        if not self._own_server:
            raise SweepError(f"the server at {self.server.grpc_url if self.server else '?'} went away")
        if self.server is not None:
            self.server.stop()  # whatever the dead server left behind
        self.server = None
        if point is not None:
            try:
                self._apply(point)
            except ServerError:
                self.server = None  # the next point starts one again

    def _log_summary(self) -> str:
        summary = getattr(self.server, "log_summary", None)
        return summary() if summary else "(remote server: no log)"

    def _record(self, point: Point, level: float, repeat: int, status: str, error: str, **values: Any) -> None:
        self.folder.append({
            "point_id": point.id,
            "point": self.plan.points.index(point),
            "is_baseline": point.baseline,
            **point.values,
            "load_kind": self.load.kind,
            "load_level": self.load.level_label(level),
            "repeat": repeat,
            "status": status,
            "error": error,
            "apply": self.apply,
            **values,
        })  # fmt: skip

    def _metadata(self, status: str) -> dict[str, Any]:
        previous = self.folder.metadata()
        return {
            "command": sys.argv,
            "started_at": previous.get("started_at", _now()),
            "resumed_at": _now() if previous else None,
            "status": status,
            "host": {"name": socket.gethostname(), "platform": platform.platform(), "cores": host.cores()},
            "gpus": host.gpus(),
            "versions": _versions(self.tools),
            "repository": str(self.repo),
            "slo_p99_ms": self.slo_p99_ms,
        }


def _versions(tool: tools.Tools) -> dict[str, str]:
    import numpy
    import torch  # here, not at the top: only a sweep's metadata needs it

    return {
        "perf": __version__,
        "tools": ", ".join(tool.installed().values()),
        "perf_analyzer": tool.perf_analyzer_version(),
        "locust": importlib.metadata.version("locust"),  # not imported: Locust patches the process for gevent
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
