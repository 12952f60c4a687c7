"""The sweep loop: a strategy proposes trials (a config at a load level); the loop applies the
config, loads it, observes the server, records a row, and tells the strategy the outcome.

Faults are rows too: a variant Triton refuses, a server that dies mid-point, a measurement
that fails. The loop records them and goes on; Ctrl-C stops it with what finished recorded,
and the same command later resumes: the recorded rows are replayed through a fresh strategy,
which so arrives where the interrupted one stood, and only what is new is measured.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import platform
import re
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from perf import __version__, host, inputs, params, search, tools, variants
from perf.drivers import Driver, DriverError, DriverTimeout
from perf.drivers.locust import Locust
from perf.drivers.perf_analyzer import LATENCY_COLUMNS, PerfAnalyzer, input_problems, model_args
from perf.modelconfig import KIND_AUTO, KIND_GPU, ModelConfig, ModelInstanceGroup
from perf.observe import (
    RESOURCE_COLUMNS,
    ResourceSampler,
    breakdown,
    breakdown_columns,
    snapshot,
    stage_times,
    tree_rss_mb,
)
from perf.plan import Plan, Point
from perf.restore import Keeper, RestoreError, keeper_file
from perf.results import CRASHED, FAILED, OK, REFUSED, TIMED_OUT, RunFolder
from perf.search import space
from perf.search.alike import behaviour
from perf.search.budget import Budget
from perf.search.compose import strategy
from perf.search.cost import cost
from perf.search.race import MARGIN, MAX_ROUNDS
from perf.server import Launcher, ServerError, TritonServer

SIDE_BY_SIDE_PHASES = ("race", "recheck")  # measured with the raced configs loaded side by side
NOT_READY = re.compile(r"Model '([^']+)' is not ready")  # Triton's words for a model it does not serve
RESIDENT = "resident"  # a row's apply: measured on its config's variant, loaded beside the others


class SweepError(RuntimeError):
    """The sweep cannot go on (not a fault of one point)."""


@dataclass(frozen=True)
class LoadSpec:
    """How every point is loaded and measured."""

    kind: str = "concurrency"  # or "request_rate"
    levels: tuple[float, ...] | None = None  # None: each config's concurrency is searched
    repeats: int | None = None  # None: 1 at given levels; a race after a load search
    batch_size: int = 1
    window_ms: int = 1000
    window_requests: int | None = None  # count windows instead of time windows
    images: Path | None = None  # a folder of JPEG/PNG; None: a generated set
    input_data: Path | None = None  # the user's requests (perf.inputs): a JSON file or a folder
    driver: str = "perf_analyzer"  # or "locust" (see perf.drivers)
    margin: float = MARGIN  # racing: throughputs within this fraction are equivalent
    max_rounds: int = MAX_ROUNDS  # racing: rounds before survivors are declared not separable
    shapes: tuple[str, ...] = ()  # NAME:D1,D2 for inputs of variable size (perf_analyzer's --shape)
    search: str = "grid"  # which configs are measured: all, or those a budgeted search picks
    budget: Budget | None = None  # a budgeted search's; None: a quarter of the configs
    seed: int = 0  # a sampling search's

    @property
    def races(self) -> bool:
        """Whether a race follows the levels: all but a grid with its repeats given."""
        return not (self.levels and self.repeats)

    def level_label(self, level: float) -> str:
        return f"{level:g}"


def python_instances(configs: dict[str, ModelConfig], gpu_count: int) -> int:
    """How many python-backend instances (each its own stub process) ``configs`` run: a GPU
    group has its count on each of its GPUs (all of the host's where it lists none)."""
    total = 0
    for config in configs.values():
        if config.backend != "python":
            continue
        for group in config.instance_group or [ModelInstanceGroup()]:
            on_gpus = group.kind in (KIND_GPU, KIND_AUTO) and gpu_count
            total += max(1, group.count) * (len(group.gpus) or gpu_count if on_gpus else 1)
    return total


def load_problems(plan: Plan, load: LoadSpec) -> list[str]:
    """Why the driver could not load the swept model as asked, found before anything starts."""
    config = plan.baseline[plan.model]
    if load.driver == "locust":
        kinds = [kind for kind, has in (("decoupled", config.model_transaction_policy.decoupled),
                                        ("sequence", config.HasField("sequence_batching"))) if has]  # fmt: skip
        if kinds:
            return [f"--driver locust: {plan.model} is a {' and '.join(kinds)} model, which perf's Locust users "
                    "do not drive (no streams, no sequence flags): use the default driver, perf_analyzer"]  # fmt: skip
        if not inputs.takes_images(config) and load.input_data is None:
            return [f"--driver locust: give {plan.model}'s requests with --input-data FILE (perf_analyzer's "
                    "JSON input-data format): Locust's users send images, or the inputs it holds"]  # fmt: skip
    data = inputs.problems(config, load.input_data, load.images)
    has_data = load.input_data is not None or inputs.takes_images(config)
    return data + input_problems(config, load.shapes, has_data=has_data)


def columns(plan: Plan) -> list[str]:
    """The table's columns, fixed by the plan: one per variable."""
    return [
        "point_id", "point", "is_baseline", *(p.column for p in plan.params),
        "load_kind", "load_level", "repeat", "phase", "status", "error", "note",
        "input_data", "throughput", *LATENCY_COLUMNS.values(), "requests", "windows", "throughput_sd",
        *breakdown_columns(plan.models), *RESOURCE_COLUMNS,
        "apply", "apply_s", "server", "started_at", "duration_s",
    ]  # fmt: skip


def plan_record(plan: Plan, load: LoadSpec, apply: str, profile: str | None = None, servers: int = 1) -> dict[str, Any]:
    """What identifies a run: resuming requires the same record."""
    targets = {p.column: list(p.targets) for p in plan.params if p.targets}  # the models of each tied column
    return {
        "model": plan.model,
        **({"calls": list(plan.calls)} if plan.calls else {}),
        **({"profile": profile} if profile else {}),
        "params": {p.column: list(p.values) for p in plan.params},
        **({"targets": targets} if targets else {}),
        "points": [p.id for p in plan.points],
        "load": {
            "kind": load.kind, "levels": list(load.levels) if load.levels else "searched", "repeats": load.repeats,
            "batch_size": load.batch_size, "window_ms": load.window_ms, "window_requests": load.window_requests,
            "images": str(load.images) if load.images else None, "driver": load.driver,
            **({"input_data": str(load.input_data)} if load.input_data else {}),
            **({"margin": load.margin, "max_rounds": load.max_rounds} if load.races else {}),
            **({"shapes": list(load.shapes)} if load.shapes else {}),
            **({"search": load.search, "budget": (load.budget or Budget()).__dict__, "seed": load.seed}
               if load.search != "grid" else {}),
            **({"servers": servers} if servers > 1 else {}),
        },
        "apply": apply,
    }  # fmt: skip


@dataclass
class Sweep:
    """One sweep's run: the plan, where it records, and the server it drives: one it is given
    (a remote server, ``server``), or those ``launch`` starts (the embedded one, or any other
    kind that can serve a config in place of the repository's: ``--apply restart``)."""

    plan: Plan
    load: LoadSpec
    folder: RunFolder
    repo: Path
    apply: str = "reload"
    server: TritonServer | None = None  # a server perf does not start (remote)
    launch: Launcher | None = None  # starts perf's own servers; None with ``server``
    slo_p99_ms: float | None = None  # recorded for reports; the sweep measures every point anyway
    progress: Callable[[int, int, str], None] = lambda done, total, what: None
    side_by_side: bool = True  # configs loaded at once, not reloaded in turn (perf's own server, by reload)
    # Further servers, each searching configs of its own: ones perf starts (launchers), or
    # running ones (another machine's Triton, --url again).
    more: list[Launcher | TritonServer] = field(default_factory=list)
    index: int = 0  # which server this is, in the rows' ``server`` column

    def __post_init__(self) -> None:
        # The other servers are sweeps of the same run that only measure: the loop hands each a
        # config's trials, and the race stays here, on one server.
        self._stations = [self] + [
            Sweep(self.plan, self.load, self.folder, self.repo, self.apply, slo_p99_ms=self.slo_p99_ms,
                  side_by_side=False, index=i,
                  **({"server": other} if isinstance(other, TritonServer) else {"launch": other}))
            for i, other in enumerate(self.more, 1)
        ]  # fmt: skip
        self.gone = False  # a server perf cannot restart went away: its configs go to the others
        # Each server measures on its own thread, one that lives as long as the sweep: Linux
        # sends a child's parent-death signal when the *thread* that started it exits, so a
        # server started on a short-lived thread would be stopped under the sweep's feet.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"server{self.index}")
        self.tools = tools.find()
        self._own_server = self.launch is not None
        self._applied: str | None = None  # the point whose config the server has now
        self._refused: dict[str, str] = {}  # points Triton refused in this run: why
        self._apply_s = 0.0
        self._load: Driver | None = None
        self._variants: dict[str, dict[str, tuple[str, ModelConfig]]] = {}  # point id -> its loaded copies
        self._drivers: dict[str, Driver] = {}  # point id -> the driver of its copies
        self._loaded_s: dict[str, float] = {}  # point id -> how long its copies took to load
        self._all_resident: bool | None = None  # every config's copies fit at once: none is reloaded
        self._by_reload: set[str] = set()  # points whose copies Triton would not load
        self._timed_out: dict[str, float] = {}  # point id -> the lowest level it timed out at
        self.restored: list[str] = []  # what was put back on servers perf did not start, a line each

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Measure what the strategy proposes until it is done; rows already recorded (a
        resumed run) are told to it again instead of being measured."""
        recorded = self.folder.rows_by_key()
        key = self._key
        self.strategy = self._strategy()
        count = 0
        metadata = self._metadata(status="running")
        self.folder.write_metadata(metadata)  # a run killed outright still says what it was
        keepers = [Keeper(keeper_file(self.folder.path, s.index), s.server) for s in self._stations
                   if not s._own_server and s.server is not None]  # fmt: skip
        for keeper in keepers:  # before anything changes on a server perf did not start
            keeper.save(self.plan.changed_models)
        try:
            for point in self.plan.points:
                self.folder.write_configs(point.id, self.plan.configs_of(point))
            while trials := self.strategy.propose():
                say = partial(self.progress, count, count + len(trials) + self.strategy.estimate())
                todo = [t for t in trials if key(t) not in recorded]
                self._load_together(todo, say)
                measured = self._on_every_server(todo, say)
                for i, trial in enumerate(trials):
                    row = recorded.get(key(trial)) or measured.get(key(trial))
                    if row is None:
                        total = count + len(trials) - i + self.strategy.estimate()
                        self.progress(count, total, self._describe(trial))
                        row = self._run_trial(trial)
                    self.strategy.tell(trial, outcome(row))
                    count += 1
                    self.progress(count, count + len(trials) - i - 1 + self.strategy.estimate(), "")
                self.folder.write_search(self.strategy.record())
            metadata["status"] = "finished"
        except KeyboardInterrupt:
            metadata["status"] = "interrupted"
            raise
        finally:
            metadata["finished_at"] = _now()
            self.folder.write_metadata(metadata)
            for keeper in keepers:
                try:
                    self.restored += keeper.restore()
                except RestoreError as error:
                    self.restored.append(f"NOT RESTORED: {error}")
            for station in self._stations:
                if station._own_server and station.server is not None:
                    station.server.stop()
                    station.server = None
                station._thread.shutdown()

    def _key(self, trial: search.Trial) -> tuple[str, str, int]:
        return trial.point_id, self.load.level_label(trial.level), trial.repeat

    def _on_every_server(self, trials: list[search.Trial], say: Callable[[str], None]) -> dict[tuple, dict[str, Any]]:
        """Trials of several configs, measured at once, each config on one server (the one that
        has it applied, else a free one); none here with one server, and the race's trials
        stay with the loop: one server measures them all, so no server's speed picks the winner.
        Each server's trials run on its own thread."""
        spread = [t for t in trials if t.phase not in SIDE_BY_SIDE_PHASES]
        points = list(dict.fromkeys(t.point_id for t in spread))
        stations = [s for s in self._stations if not s.gone]
        if len(stations) == 1 or not points:
            return {}
        station_of: dict[str, Sweep] = {}
        for point in points:  # first the servers that have a point applied, then the free ones
            applied = [s for s in stations if s._applied == point and s not in station_of.values()]
            if applied:
                station_of[point] = applied[0]
        for point in points:
            if point not in station_of:
                free = [s for s in stations if s not in station_of.values()]
                station_of[point] = free[0] if free else stations[len(station_of) % len(stations)]
        groups: dict[int, list[search.Trial]] = {}
        for trial in spread:
            groups.setdefault(station_of[trial.point_id].index, []).append(trial)
        say(f"{len(points)} configs on {len(groups)} servers")

        def measure(index: int) -> list[tuple[search.Trial, dict[str, Any]]]:
            station, measured = self._stations[index], []
            for trial in groups[index]:
                try:
                    measured.append((trial, station._run_trial(trial)))
                except (SweepError, ServerError, DriverError) as error:
                    if station.server is not None and station.server.alive():
                        raise
                    # Its server went away for good: a crashed row, and its configs to the others.
                    station.gone = True
                    row = self.folder.rows_by_key().get(self._key(trial))
                    if row is None:
                        point = next(p for p in self.plan.points if p.id == trial.point_id)
                        row = station._record(point, trial, CRASHED, f"{error}; the server went away")
                    measured.append((trial, row))
                    break
            return measured

        futures = [self._stations[index]._thread.submit(measure, index) for index in groups]
        return {self._key(trial): row for future in futures for trial, row in future.result()}

    def _strategy(self) -> search.Strategy:
        configs = {p.id: {m: p.configs.get(m, self.plan.baseline[m]) for m in self.plan.models}
                   for p in self.plan.points}  # fmt: skip
        costs = {point: cost(each) for point, each in configs.items()}

        def alike(point: str, level: float) -> str:
            return behaviour(configs[point], level, self.load.batch_size)

        return strategy([p.id for p in self.plan.points], self.load.levels, self.load.repeats, self.slo_p99_ms, costs,
                        self.load.margin, self.load.max_rounds, self.load.search, space.of_plan(self.plan),
                        self.load.budget, self.load.seed, width=len(self._stations),
                        alike=alike if self.load.kind == "concurrency" else None,
                        prefer=next((p.id for p in self.plan.points if p.baseline), None))  # fmt: skip

    def _describe(self, trial: search.Trial) -> str:
        index = next(i for i, p in enumerate(self.plan.points) if p.id == trial.point_id)
        return f"{trial.phase}: point {index + 1}/{len(self.plan.points)} {self.load.kind} {trial.level:g}"

    def _run_trial(self, trial: search.Trial) -> dict[str, Any]:
        """Apply the trial's config if another is live, warm it up, and measure: the row."""
        point = next(p for p in self.plan.points if p.id == trial.point_id)
        if point.id in self._refused:
            return self._record(point, trial, REFUSED, self._refused[point.id])
        if (lowest := self._timed_out.get(point.id)) is not None and trial.level >= lowest:
            # More load cannot finish sooner: not waited on again.
            return self._record(point, trial, TIMED_OUT, f"not measured: it timed out at {self.load.kind} "
                                f"{lowest:g}, a lower or equal load")  # fmt: skip
        resident = self._resident(trial) and point.id not in self._by_reload
        if resident and self._can_side_by_side(int(point.id not in self._variants)):
            return self._run_side_by_side(point, trial)
        if self._applied != point.id:
            started = time.perf_counter()
            try:
                self._apply(point)
            except ServerError as error:
                crashed = self.server is not None and not self.server.alive()
                if not crashed:
                    self._refused[point.id] = str(error)
                    return self._record(point, trial, REFUSED, str(error))
                return self._crashed(point, trial, error)
            self._applied = point.id
            self._load = self._driver()
            if (crashed_row := self._warm_up(point, trial, self._load)) is not None:
                return crashed_row
            self._apply_s = time.perf_counter() - started
        return self._measure(point, trial, self._load)

    def _warm_up(
        self, point: Point, trial: search.Trial, driver: Driver, names: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """Warm ``driver`` up at the trial's level; the crashed row if Triton died meanwhile,
        the timed-out row if the warm-up did not finish by its deadline."""
        assert self.server is not None
        try:
            before = self._counters(names or {})
            try:
                driver.warm_up(trial.level, self.load.kind)
            except DriverTimeout as error:
                return self._stopped(point, trial, error, before, names)
            # The replaced instances exit while the new ones warm up; measuring before they
            # are gone would give them the measurement's CPU (11 % of the ensemble's here).
            self.server.settle(self._python_stubs())
        except (DriverError, ServerError) as error:
            if self.server.alive():
                raise
            return self._crashed(point, trial, error)
        return None

    # -- side by side ---------------------------------------------------------------------

    def _resident(self, trial: search.Trial) -> bool:
        """Whether ``trial`` is measured on its config's own copies, loaded beside the others:
        the race's always; the grid's and the load search's too where every config of the plan
        fits in memory at once, so no config is ever reloaded (a classifier reload, its warm-up
        and the wait for the replaced instances to exit took 2 to 5 s here, each time). Decided
        once the server runs, on one server only (several search configs at once)."""
        if trial.phase in SIDE_BY_SIDE_PHASES:
            return True
        if self._all_resident is None and self.server is not None:
            # Asked, not acted on: where the whole plan does not fit, the race still may.
            fits = self._can_side_by_side(0) and self._fits(len(self.plan.points))
            self._all_resident = len(self._stations) == 1 and fits
        return bool(self._all_resident)

    def _can_side_by_side(self, more: int = 1) -> bool:
        """A server perf staged itself, applied by reload, with memory for ``more`` configs
        (short of it, the rest of the sweep reloads; the rows say so)."""
        if not (self.side_by_side and self.apply == "reload" and getattr(self.server, "staged", None)):
            return False
        if self.plan.changes_callee:
            return False
        if more and not self._fits(more):
            self.side_by_side = False
        return self.side_by_side

    def _fits(self, more: int) -> bool:
        """Whether free memory holds ``more`` configs' copies besides those loaded, each taking
        what the server takes per config now."""
        assert self.server is not None
        per_config = tree_rss_mb(self.server.pid) / (1 + len(self._variants))
        return psutil.virtual_memory().available / 2**20 >= (more + 1) * per_config + 512

    def _load_together(self, trials: list[search.Trial], say: Callable[[str], None]) -> None:
        """The copies of every point a batch of trials is about to measure side by side (a race
        round, a grid), loaded at once: Triton loads models in parallel, and loads together take
        less than in turn. Any error leaves it to each point's own load, which records it."""
        points = [p for p in dict.fromkeys(t.point_id for t in trials if self._resident(t))
                  if p not in self._variants and p not in self._refused and p not in self._by_reload]  # fmt: skip
        if len(points) < 2 or not self._can_side_by_side(len(points)):
            return
        copies = {p: variants.configs(self.plan, next(q for q in self.plan.points if q.id == p)) for p in points}
        say(f"loading {len(points)} configs side by side")
        started = time.perf_counter()
        try:
            self._load_copies(list(copies.values()))
        except ServerError:
            return
        for point, loaded in copies.items():
            self._variants[point] = loaded
            self._loaded_s[point] = time.perf_counter() - started  # the round's copies, loaded together

    def _run_side_by_side(self, point: Point, trial: search.Trial) -> dict[str, Any]:
        """Measure ``point`` on its copies, loading them and warming them up the first time."""
        assert self.server is not None
        if point.id not in self._variants:
            copies = variants.configs(self.plan, point)
            started = time.perf_counter()
            try:
                self._load_copies([copies])
            except ServerError as error:
                if self.server.alive():  # Triton would not load the copies: this config by reload,
                    self._by_reload.add(point.id)  # which records Triton's refusal, if it is one
                    return self._run_trial(trial)
                return self._crashed(point, trial, error)
            self._loaded_s[point.id] = time.perf_counter() - started
            self._variants[point.id] = copies
        if point.id not in self._drivers:
            top = self._variants[point.id].get(self.plan.model, (self.plan.model, None))[0]
            self._drivers[point.id] = self._driver(top)
            names = {m: name for m, (name, _) in self._variants[point.id].items()}
            if (crashed_row := self._warm_up(point, trial, self._drivers[point.id], names)) is not None:
                return crashed_row
        return self._measure(point, trial, self._drivers[point.id], self._variants[point.id])

    def _load_copies(self, points: list[dict[str, tuple[str, ModelConfig]]]) -> None:
        """Stage and load points' copies: the models at once, then the ensembles that call them."""
        assert self.server is not None
        server, staged = self.server, self.server.staged.path  # type: ignore[attr-defined]
        for copies in points:
            for model, (name, config) in copies.items():
                variants.stage(staged, model, name, config)
        names = [(name, config) for copies in points for name, config in copies.values()]
        for ensembles in (False, True):  # the models, then the ensembles that call them
            batch = [name for name, config in names if (config.platform == "ensemble") == ensembles]
            with ThreadPoolExecutor(max(1, len(batch))) as pool:
                list(pool.map(server.load_model, batch))
        for copies in points:
            self._verify({m: config for m, (_, config) in copies.items()}, {m: name for m, (name, _) in copies.items()})

    def _python_stubs(self) -> int:
        """The python stubs the live configs run: the last applied point's and every copy's."""
        gpus = len(host.gpus())
        point = next((p for p in self.plan.points if p.id == self._applied), None)
        serving = {m: (point.configs if point else {}).get(m, self.plan.baseline[m]) for m in self.plan.models}
        copies = [{m: config for m, (_, config) in c.items()} for c in self._variants.values()]
        return python_instances(serving, gpus) + sum(python_instances(c, gpus) for c in copies)

    # -- apply ---------------------------------------------------------------------------

    def _apply(self, point: Point) -> None:
        configs = self.plan.configs_of(point)
        if self.apply == "restart" or self.server is None:
            self._restart(configs)
        else:
            self._reload(configs)
        self._verify(configs)

    def _reload(self, configs: dict[str, ModelConfig]) -> None:
        """The composing models at once (each reload is mostly a python stub starting: two
        together took 4.4 s here against 5.6 s in turn), then the ensemble that calls them."""
        assert self.server is not None
        server = self.server
        composing = [m for m in configs if m != self.plan.model]
        with ThreadPoolExecutor(max(1, len(composing))) as pool:
            list(pool.map(lambda m: server.load_model(m, configs[m]), composing))
        if self.plan.model in configs:
            server.load_model(self.plan.model, configs[self.plan.model])

    def _restart(self, configs: dict[str, ModelConfig]) -> None:
        if self.launch is None:
            if self.apply == "restart":
                raise SweepError("--apply restart needs a server perf starts itself (not --url)")
            return
        if self.server is not None:
            self.server.stop()
        self.server = self.launch(configs if self.apply == "restart" else {})
        self.server.start()
        # A fresh server serves the repository's configs: the baseline needs no reload (the
        # classifier's took 5 to 7 s here, on every sweep's first point).
        if self.apply == "reload" and any(config != self.plan.baseline[m] for m, config in configs.items()):
            self._reload(configs)

    def _verify(self, configs: dict[str, ModelConfig], names: dict[str, str] | None = None) -> None:
        """The live config must say what was intended; Triton fills defaults silently. ``names``:
        where a model is served under another name (its copy)."""
        assert self.server is not None
        for model, intended in configs.items():
            live = self.server.model_config((names or {}).get(model, model))
            paths = [p.path for p in self.plan.params if model in p.models] + ["max_batch_size"]
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

    def _driver(self, model: str | None = None) -> Driver:
        """The load on ``model`` (the swept model; or its copy, by its name)."""
        assert self.server is not None
        model = model or self.plan.model
        if self.load.driver == "locust":
            if self.load.input_data is not None and inputs.is_image_folder(self.load.input_data):
                return Locust(self.server.grpc_url, model, self.load.input_data, self.load.batch_size,
                              self.load.window_ms)  # fmt: skip
            data = self._input_data() if self.load.input_data is not None else None  # what perf_analyzer sends
            return Locust(self.server.grpc_url, model, self.load.images, self.load.batch_size, self.load.window_ms,
                          input_data=data)  # fmt: skip
        return PerfAnalyzer(
            self.tools,
            self.server.grpc_url,
            model,
            self._input_data(),
            batch_size=self.load.batch_size,
            measurement_interval_ms=self.load.window_ms,
            measurement_requests=self.load.window_requests,
            extra_args=model_args(self.plan.baseline[self.plan.model], self.load.shapes),
        )

    def _input_data(self) -> Path | None:
        """The run's input-data file, the same for every server and driver of it."""
        config = self.plan.baseline[self.plan.model]
        return inputs.write(self.folder.path / "input.json", config, self.load.input_data, self.load.images)

    def _measure(
        self,
        point: Point,
        trial: search.Trial,
        load: Driver | None,
        copies: dict[str, tuple[str, ModelConfig]] | None = None,
    ) -> dict[str, Any]:
        """One row. On a point's ``copies``, the counters are its copies', and the memory the
        server's own process and its copies' python stubs: the server holds every config loaded
        side by side then, not this one alone. Where a copy is served inside the server's process
        (another backend), its share cannot be told apart: no memory figure; nor GPU memory,
        which Triton reports per GPU, not per model."""
        assert self.server is not None and load is not None
        names = {m: name for m, (name, _) in (copies or {}).items()}
        started_at, started = _now(), time.perf_counter()
        own = frozenset(names.values()) if copies else None
        sampler = ResourceSampler(self.server.pid, self.server.metrics_url if host.gpus() else None, models=own)
        try:  # Triton may die at any moment of it: reading its counters, or under the load
            before = self._counters(names)
            with sampler:
                measured = load.run(trial.level, self.load.kind)
            after = self._counters(names)
        except DriverTimeout as error:
            return self._stopped(point, trial, error, before, names, started_at=started_at)
        except (DriverError, ServerError) as error:
            if self.server.alive():
                if isinstance(error, ServerError):
                    raise
                return self._record(point, trial, FAILED, self._explain(str(error)), started_at=started_at)
            return self._crashed(point, trial, error, started_at=started_at)
        resources, applied_s, self._apply_s = sampler.result(), self._apply_s, 0.0
        if copies:
            inside = any(c.backend != "python" and c.platform != "ensemble" for _, c in copies.values())
            resources.update(gpu_memory_mb=None, **({"server_rss_mb": None} if inside else {}))
        values = {
            **{k: v for k, v in measured.items() if k not in ("concurrency", "request_rate")},
            **breakdown(before, after),
            **resources,
            "apply_s": round(self._loaded_s.pop(point.id, 0.0) if copies else applied_s, 3),
            "duration_s": round(time.perf_counter() - started, 3),
            **({"apply": RESIDENT} if copies else {}),
        }
        return self._record(point, trial, OK, "", started_at=started_at, **values)

    def _explain(self, error: str) -> str:
        """A failure with what to do about it, where perf knows: a model the measured one calls
        by name (BLS) that the server does not serve has to be loaded with it."""
        missing = [m for m in dict.fromkeys(NOT_READY.findall(error)) if m not in self.plan.models]
        if not missing:
            return error
        names = " ".join(missing)
        return (f"{error} ({self.plan.model} calls {', '.join(missing)}, which the sweep did not load: where it "
                f"calls them itself (BLS), load them with it: --load {names})")  # fmt: skip

    def _counters(self, names: dict[str, str]) -> dict[str, dict[str, int]]:
        """Each model's counters, read under the name it is served by."""
        assert self.server is not None
        live = snapshot(self.server, [names.get(m, m) for m in self.plan.models])
        return {m: live[names.get(m, m)] for m in self.plan.models}

    def _stopped(
        self,
        point: Point,
        trial: search.Trial,
        error: DriverTimeout,
        before: dict[str, dict[str, int]],
        names: dict[str, str] | None = None,
        **values: Any,
    ) -> dict[str, Any]:
        """The row of a measurement stopped at its deadline, with what was seen by then: the
        driver's windows, and the requests each model finished (a decoupled model's responses
        per request, where Triton counts them). A server of perf's own is replaced, for the
        requests still running would hold its instances; a server perf did not start is left."""
        seen: dict[str, Any] = dict(error.seen)
        try:
            after = self._counters(names or {})
            seen.update({k: v for k, v in breakdown(before, after).items() if before and k.endswith(".requests")})
            seen.update(self._seen(before, after))
        except ServerError:
            pass
        row = self._record(point, trial, TIMED_OUT, str(error), **seen, **values)
        self._timed_out[point.id] = min(trial.level, self._timed_out.get(point.id, trial.level))
        if self._own_server:
            self._recover()
        return row

    def _seen(self, before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, Any]:
        """What a stopped measurement got done, in words: the requests the measured model
        finished, and a decoupled model's responses where Triton counts them (its statistics
        have them per response index; the python backend of 2.51 reports none)."""
        model = self.plan.model
        if model not in before:
            return {}
        requests = after[model]["success"] - before[model]["success"]
        note = f"{requests} request{'s' * (requests != 1)} of {model} finished before it was stopped"
        responses = after[model]["responses"] - before[model]["responses"]
        if self.plan.baseline[model].model_transaction_policy.decoupled and responses:
            note += f"; {responses} responses sent"
        return {"note": note}

    def _crashed(self, point: Point, trial: search.Trial, error: Exception, **values: Any) -> dict[str, Any]:
        """The row of a trial Triton's exit cut short; the next trial gets a fresh server."""
        row = self._record(point, trial, CRASHED, f"{error}; Triton exited: {self._log_summary()}", **values)
        self._recover()
        return row

    def _recover(self) -> None:
        """After a crash: the dead server cleared away, so the next trial starts a fresh one,
        applies its config and warms it up (a cold server's first window can hold no request)."""
        if not self._own_server:
            raise SweepError(f"the server at {self.server.grpc_url if self.server else '?'} went away")
        if self.server is not None:
            self.server.stop()  # whatever the dead server left behind
        self.server = None
        self._applied = None
        self._variants, self._drivers, self._loaded_s = {}, {}, {}

    def _log_summary(self) -> str:
        summary = getattr(self.server, "log_summary", None)
        return summary() if summary else "(remote server: no log)"

    def _record(self, point: Point, trial: search.Trial, status: str, error: str, **values: Any) -> dict[str, Any]:
        row = {
            "point_id": point.id,
            "point": self.plan.points.index(point),
            "is_baseline": point.baseline,
            **point.values,
            "load_kind": self.load.kind,
            "load_level": self.load.level_label(trial.level),
            "repeat": trial.repeat,
            "phase": trial.phase,
            "status": status,
            "error": error,
            "input_data": inputs.describe(self.plan.baseline[self.plan.model], self.load.input_data, self.load.images),
            "apply": self.apply,
            "server": self.index,
            **values,
        }  # fmt: skip
        self.folder.append(row)
        return row

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
            "notes": list(self.plan.notes),  # what these numbers are not (a GPU config run on the CPU)
        }


def outcome(row: dict[str, Any]) -> search.Outcome:
    """What a strategy learns from a row, measured now or read back from the table."""

    def number(name: str) -> float:
        value = row.get(name)
        return math.nan if value is None or value == "" else float(value)

    return search.Outcome(str(row["status"]), number("throughput"), number("p99_ms"), number("server_rss_mb"),
                          str(row.get("error") or ""), seconds=_zero(number("apply_s")) + _zero(number("duration_s")),
                          times=stage_times(row), server=int(_zero(number("server"))))  # fmt: skip


def _zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _versions(tool: tools.Tools) -> dict[str, str]:
    """Read from the installed packages' metadata, not imported: importing torch alone took
    1.2 s of every sweep's start here, and Locust patches the process for gevent."""
    return {
        "perf": __version__,
        "tools": ", ".join(tool.installed().values()),
        "perf_analyzer": tool.perf_analyzer_version(),
        **{package: importlib.metadata.version(package) for package in ("locust", "numpy", "torch")},
        "python": platform.python_version(),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
