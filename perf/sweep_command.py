"""`perf sweep`: its arguments (repeatable --param NAME --values V1 V2 ..., or a sweep file),
the plan shown before it runs, the progress bar, and the summary after."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from perf import findings, host, ma_config, plan, report, restore, results
from perf.drivers import DRIVERS
from perf.drivers.perf_analyzer import LOAD_KINDS
from perf.repository import open_repository, reference_repository
from perf.search import space
from perf.search.budget import RACED, default_budget, parse_budget
from perf.search.compose import SEARCHES
from perf.search.race import MARGIN, MAX_ROUNDS
from perf.server import RemoteServer, embedded_launcher
from perf.sweep import LoadSpec, Sweep, columns, load_problems, plan_record

USAGE = """perf sweep [--model MODEL] --param NAME [--values V1 V2 ...] [--param NAME [--values ...]]
                  [--concurrency N ... | --request-rate R ...] [--repeats N] [--apply reload|restart]
                  [--driver perf_analyzer|locust] [--input-data PATH] [--load MODEL ...]
                  [--out RUN] [--slo-p99-ms MS] [--dry-run] [--file SWEEP.yaml]"""

DESCRIPTION = """Measure every combination of model settings at every load level, and keep every point.

NAME is a short name (instance_count, kind, gpus, max_batch_size, preferred_batch_size,
max_queue_delay_microseconds, preserve_ordering, response_cache) or any dotted path of Triton's
ModelConfig (dynamic_batching.max_queue_delay_microseconds, parameters.torch_num_threads);
MODEL.NAME targets one composing model of an ensemble; a bare NAME on an ensemble sets every
composing model that has the setting to the same value. Values are read as YAML: 2, [8,16], true;
without --values they are generated from the model's config and the host (--dry-run shows them).
A --param with one value is a fixed setting. The same command again resumes an interrupted run."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perf sweep", usage=USAGE, description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--file", type=Path,
                   help="sweep file (YAML or TOML) with the same keys as these options, or a Model Analyzer "
                        "profile config (read as is)")  # fmt: skip
    p.add_argument(
        "--model",
        help="the model to measure (an ensemble's composing models are loaded with it); "
        "default: the repository's one model no ensemble calls",
    )
    p.add_argument("--load", nargs="+", metavar="MODEL",
                   help="models the measured one calls by name (a BLS model's; Model Analyzer's "
                        "bls_composing_models), loaded with it; their settings are swept as MODEL.NAME")  # fmt: skip
    p.add_argument("--repo", type=Path, help="model repository (default: the reference model_repo/); only read")
    p.add_argument("--profile", help="start from each model's configs/PROFILE.pbtxt (e.g. tuned), not config.pbtxt")
    p.add_argument("--concurrency", type=int, nargs="+",
                   help="closed-loop load levels (default: each config's concurrency is searched)")  # fmt: skip
    p.add_argument("--request-rate", type=float, nargs="+", help="open-loop load levels, requests per second")
    p.add_argument("--repeats", type=int,
                   help="measurements of each point and level (default 1 at given levels; with searched levels, "
                        "a fixed count instead of racing)")  # fmt: skip
    p.add_argument(
        "--margin",
        type=float,
        help="racing: throughputs within this fraction of the leader's are equivalent (default 0.05)",
    )
    p.add_argument(
        "--max-rounds",
        type=int,
        help="racing: its budget, this many rounds of measurements of every raced config (default 5)",
    )
    p.add_argument("--search", choices=SEARCHES,
                   help="which configs to measure: grid, every one (default); optuna, those Optuna's TPE "
                        "sampler picks; guided, steps that relieve the bottleneck model; the best few are then "
                        "raced")  # fmt: skip
    p.add_argument("--budget", help="optuna and guided: at most this many configs (12), or this much measuring, "
                                    "the race included (10m, 600s, 1h); default a quarter of the configs")  # fmt: skip
    p.add_argument("--seed", type=int, help="optuna: the sampler's seed (default 0); the same seed, the same search")
    p.add_argument("--apply", choices=plan.APPLY_MODES, help="reload via the model-control API (default) or restart")
    p.add_argument(
        "--race-by-reload",
        action="store_true",
        help="search and race by reloading each config in turn; by default a server perf starts keeps configs "
        "loaded side by side under their own names (the raced ones; all, where they fit), so they are not reloaded",
    )
    p.add_argument("--out", type=Path, help="run folder (default runs/sweep-TIMESTAMP); an existing one resumes")
    p.add_argument("--shape", action="append", metavar="NAME:DIMS",
                   help="an input of variable size: the size to send (INPUT0:8,16; repeatable)")  # fmt: skip
    p.add_argument("--images", type=Path, help="folder of JPEG/PNG payloads (default: generated 640x480 JPEGs)")
    p.add_argument("--input-data", type=Path, metavar="PATH",
                   help="the requests' inputs: perf_analyzer's JSON input-data file (Model Analyzer's), a folder "
                        "of such files, or a folder of raw payloads for a one-input model; needed where random "
                        "data means nothing (strings, a decoupled model's counts)")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="client batch size (default 1)")
    p.add_argument("--driver", choices=DRIVERS,
                   help="load generator (default perf_analyzer); locust runs locustfiles/grpc.py headless, "
                        "users = concurrency, for three windows")  # fmt: skip
    p.add_argument("--measurement-interval", type=int,
                   help="measurement window in ms (default 1000); each measurement is three windows")  # fmt: skip
    p.add_argument("--measurement-requests", type=int,
                   help="windows of this many requests instead of time (perf_analyzer's count_windows)")  # fmt: skip
    p.add_argument("--slo-p99-ms", type=float,
                   help="latency objective: the best config must meet it (default: each config is compared at its "
                        "knee, the lowest load that gives 90 %% of its highest throughput)")  # fmt: skip
    p.add_argument("--peak", action="store_true",
                   help="compare configs at their highest throughput, whatever its latency")  # fmt: skip
    p.add_argument("--url", action="append",
                   help="measure a running server (gRPC HOST:PORT) instead of starting one; again for more "
                        "servers (one a machine) that search configs at once, the race on the first")  # fmt: skip
    p.add_argument("--servers", type=int,
                   help="embedded servers that search configs at once, a config each (default 1); the race "
                        "runs on the first. Servers on one host share its cores and GPUs")  # fmt: skip
    p.add_argument("--no-baseline", action="store_true", help="do not measure the repository's own config")
    p.add_argument("--no-response-cache", action="store_true",
                   help="sweep with every response cache off (replayed inputs measure the cache)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return p


PATH_OPTIONS = ("repo", "out", "images", "input_data")


def read_sweep_file(path: Path) -> dict[str, Any]:
    """A sweep file: the options' names as keys, ``params`` a mapping of name to values; a
    Model Analyzer profile config comes back as it is, for :func:`options` to translate."""
    if not path.is_file():
        raise plan.PlanError([f"sweep file {path} not found"])
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise plan.PlanError([f"{path}: {error}"]) from None
    if not isinstance(data, dict):
        raise plan.PlanError([f"{path}: expected a mapping of options"])
    if ma_config.is_profile(data):
        return data  # Model Analyzer's keys: options() translates them, knowing --model and --repo
    known = {a.dest for a in parser()._actions} | {"params"}
    if unknown := sorted(set(data) - known):
        raise plan.PlanError([f"{path}: unknown keys {unknown}; known: {sorted(known - {'help', 'file'})}"])
    return {k.replace("-", "_"): v for k, v in data.items()}


def options(args: list[str]) -> tuple[argparse.Namespace, list[tuple[str, list[Any] | None]]]:
    """Options and (name, values) pairs, the command line over the sweep file; values None
    (``--param NAME`` alone, ``NAME: null`` in the file) are generated when the plan is built."""
    flags, rest = [], []
    i = 0
    while i < len(args):  # --param/--values pairs go to their own parser
        if args[i] == "--param":
            j = i + 1
            while j < len(args) and (args[j] in ("--values",) or not args[j].startswith("--")):
                j += 1
            rest.extend(args[i:j])
            i = j
        else:
            flags.append(args[i])
            i += 1
    namespace = parser().parse_args(flags)
    pairs: list[tuple[str, list[Any] | None]] = list(plan.parse_param_args(rest))
    if namespace.file:
        data = read_sweep_file(namespace.file)
        if ma_config.is_profile(data):
            data = ma_config.read_profile(data, namespace.file, namespace.model, namespace.repo, namespace.profile)
        for key, value in data.items():
            if key != "params" and getattr(namespace, key, None) in (None, False):
                # A file's paths are strings; the command line's are Paths (type=Path).
                setattr(namespace, key, Path(value) if key in PATH_OPTIONS and isinstance(value, str) else value)
        given = {name for name, _ in pairs}
        for name, values in (data.get("params") or {}).items():
            if name not in given:
                pairs.append((name, values if isinstance(values, list) or values is None else [values]))
    if not namespace.model:
        repo_path = Path(namespace.repo or reference_repository()).expanduser().resolve()
        namespace.model = plan.default_model(open_repository(repo_path, namespace.profile))
    return namespace, pairs


def load_spec(ns: argparse.Namespace) -> LoadSpec:
    if ns.concurrency and ns.request_rate:
        raise plan.PlanError(["give --concurrency or --request-rate, not both"])
    kind = "request_rate" if ns.request_rate else "concurrency"
    levels = tuple(ns.request_rate or ns.concurrency or ())
    problems = [f"load level {v:g} must be above 0" for v in levels if v <= 0]
    if ns.margin is not None and not 0 < ns.margin < 1:
        problems.append("--margin is a fraction of throughput: above 0 and below 1 (0.05 is 5 %)")
    if ns.max_rounds is not None and ns.max_rounds < 1:
        problems.append("--max-rounds must be 1 or more")
    if ns.measurement_requests is not None and ns.measurement_requests < 10:
        problems.append("--measurement-requests must be 10 or more")
    if ns.repeats is not None and ns.repeats < 1:
        problems.append("--repeats must be 1 or more")
    if ns.images and not ns.images.is_dir():
        problems.append(f"--images {ns.images} is not a folder")
    search, budget = ns.search or "grid", None
    if search == "grid" and (ns.budget is not None or ns.seed is not None):
        problems.append("--budget and --seed are for a budgeted search: add --search optuna or --search guided")
    if search != "grid" and levels:
        problems.append(f"--search {search} searches each config's concurrency: drop --concurrency/--request-rate")
    if ns.budget is not None:
        try:
            budget = parse_budget(str(ns.budget))
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise plan.PlanError(problems)
    assert kind in LOAD_KINDS
    return LoadSpec(
        kind=kind,
        levels=levels or None,
        repeats=ns.repeats,
        batch_size=ns.batch_size or 1,
        window_ms=ns.measurement_interval or 1000,
        window_requests=ns.measurement_requests,
        images=ns.images.resolve() if ns.images else None,
        input_data=ns.input_data.expanduser().resolve() if ns.input_data else None,
        driver=ns.driver or "perf_analyzer",
        margin=ns.margin or MARGIN,
        max_rounds=ns.max_rounds or MAX_ROUNDS,
        shapes=tuple(ns.shape or ()),
        search=search,
        budget=budget,
        seed=ns.seed or 0,
    )


def main(args: list[str], console: Console) -> int:
    ns, pairs = options(args)
    if ns.peak:
        if ns.slo_p99_ms is not None:
            raise plan.PlanError(["give --peak or --slo-p99-ms, not both"])
        ns.slo_p99_ms = math.inf  # a latency objective every measurement meets: the highest throughput wins
    for warning in getattr(ns, "ma_warnings", None) or ():
        console.print(f"[yellow]Model Analyzer[/yellow]: {escape(warning)}", highlight=False)
    repo_path = (ns.repo or reference_repository()).expanduser().resolve()
    repo = open_repository(repo_path, ns.profile)
    urls = [ns.url] if isinstance(ns.url, str) else list(ns.url or [])  # a sweep file's url is one string
    remotes = [RemoteServer.from_url(url) for url in urls]
    remote = remotes[0] if remotes else None
    gpu_count = len(host.gpus())
    calls = tuple([ns.load] if isinstance(ns.load, str) else ns.load or ())  # a sweep file's may be one name
    the_plan = plan.build(ns.model, pairs, repo, gpu_count, host.cores(), response_cache=not ns.no_response_cache,
                          calls=calls)  # fmt: skip
    if not ns.no_baseline:
        the_plan = plan.with_baseline(the_plan)
    load = load_spec(ns)
    if problems := load_problems(the_plan, load):
        raise plan.PlanError(problems)
    if the_plan.baseline[the_plan.model].model_transaction_policy.decoupled and load.input_data is None:
        note = (
            f"{the_plan.model} is decoupled and no --input-data is given: random inputs may ask it for any "
            "number of responses; a measurement not finished by its deadline is stopped and recorded timed_out"
        )
        the_plan = dataclasses.replace(the_plan, notes=(*the_plan.notes, note))
    apply = ns.apply or "reload"
    if remote and apply == "restart":
        raise plan.PlanError(["--apply restart needs a server perf starts itself: drop --url"])
    servers = 1 if ns.servers is None else ns.servers
    if servers < 1 or (remote and servers > 1):
        raise plan.PlanError(["--servers N starts N embedded servers (1 or more): not with --url"])
    if load.search != "grid" and load.budget is None:
        load = dataclasses.replace(load, budget=default_budget(space.of_plan(the_plan)))
    estimate = estimate_seconds(the_plan, load, apply)
    if ns.dry_run:
        print_plan(the_plan, load, apply, estimate, ns.slo_p99_ms, console)
        return 0
    for server in remotes:  # before anything is written or changed
        server.start()
        restore.require_explicit(server)
    out = ns.out or Path("runs") / f"sweep-{dt.datetime.now():%Y%m%d-%H%M%S}"
    folder = results.RunFolder.open(out, plan_record(the_plan, load, apply, ns.profile, len(remotes) or servers),
                                    columns(the_plan))  # fmt: skip
    print_notes(the_plan, console)
    console.print(f"{len(the_plan.points)} points, {describe_load(load, ns.slo_p99_ms)}: about {_minutes(estimate)}; "
                  f"results in {folder.path}", highlight=False)  # fmt: skip
    with _progress(console) as bar:
        task = bar.add_task("sweep", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, **({"description": what} if what else {}))

        launch, more = None, remotes[1:]
        if not remote:
            launch, *more = [embedded_launcher(repo_path, folder.path / f"server{f'{i + 1}' if i else ''}",
                                               the_plan.models, ns.profile) for i in range(servers)]  # fmt: skip
        sweep = Sweep(the_plan, load, folder, repo_path, apply, server=remote, launch=launch, progress=progress,
                      slo_p99_ms=ns.slo_p99_ms, side_by_side=not ns.race_by_reload, more=more)  # fmt: skip
        try:
            sweep.run()
        except KeyboardInterrupt as stop:
            bar.stop()
            done = len(folder.table())
            console.print(f"[yellow]interrupted[/yellow]: {done} rows recorded in {folder.path}; "
                          "run the same command to resume")  # fmt: skip
            return host.exit_code(stop)
        finally:  # whatever ended the sweep, what it put back on a server it did not start
            print_restored(sweep.restored, console)
    print_summary(folder, ns.slo_p99_ms, console)
    return 0


def print_restored(restored: list[str], console: Console) -> None:
    """What was put back on servers perf did not start, and plainly what was not."""
    for line in restored:
        failed = line.startswith("NOT RESTORED")
        console.print(f"[red]{escape(line)}[/red]" if failed else f"[green]restored[/green]: {escape(line)}",
                      highlight=False)  # fmt: skip


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console,
    )  # fmt: skip


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict | bool) else str(value)


def describe_load(load: LoadSpec, slo: float | None) -> str:
    """How each point is loaded, in words."""
    race = f"raced (margin {load.margin:.0%}, at most {load.max_rounds} rounds' worth of measurements)"
    if load.levels:
        levels = f"{load.kind} {' '.join(f'{v:g}' for v in load.levels)}"
        if load.repeats:
            return f"{levels} x {load.repeats} repeats"
        return f"{levels}, then {race} at each one's highest level within the SLO"
    target = ("the highest, whatever its p99 (--peak)" if slo == math.inf else
              f"the highest within p99 <= {slo:g} ms" if slo is not None else
              "each config's knee, the lowest that gives 90 % of its highest throughput")  # fmt: skip
    then = f"then {load.repeats} measurements each at its level" if load.repeats else f"then {race}"
    if load.budget is not None:
        picks = "Optuna's TPE sampler" if load.search == "optuna" else "the bottleneck rules"
        return (f"concurrency searched ({target}) for the configs {picks} picks, {load.budget.describe()} at "
                f"most, {then.replace('then ', f'then the best {RACED} and the baseline ')}")  # fmt: skip
    return f"concurrency searched ({target}), {then}"


def estimate_seconds(the_plan: plan.Plan, load: LoadSpec, apply: str) -> float:
    """The grid's estimate; a budgeted search's is its budget's share of it, and its race."""
    estimate = plan.estimate_seconds(the_plan, measurements_per_point(load), 1, apply, load.window_ms)
    if load.budget is None:
        return estimate
    per_config = estimate / len(the_plan.points)
    if load.budget.seconds is not None:
        return load.budget.seconds + (RACED + 1) * per_config / 2
    return min(len(the_plan.points), load.budget.configs + 1) * per_config


def measurements_per_point(load: LoadSpec) -> int:
    """What the estimate counts on: the levels and repeats given, or a typical search and race."""
    if load.levels:
        return len(load.levels) * (load.repeats or 1) + (0 if load.repeats else 4)
    return 5 + (load.repeats or 4)


def print_plan(
    the_plan: plan.Plan, load: LoadSpec, apply: str, estimate: float, slo: float | None, console: Console
) -> None:
    columns = [escape(p.column) for p in the_plan.params]  # instance_group[1].count is not markup
    table = Table("point", "id", *columns, "notes", title=f"Sweep of {the_plan.model}")
    for i, point in enumerate(the_plan.points):
        notes = "; ".join([*(["baseline"] if point.baseline else []), *point.notes])
        table.add_row(str(i), point.id, *(escape(_value(point.values[p.column])) for p in the_plan.params),
                      escape(notes))  # fmt: skip
    console.print(table)
    print_notes(the_plan, console)
    for i, point in enumerate(the_plan.points):
        for model, config in point.configs.items():
            diff = plan.config_diff(the_plan.baseline[model], config, model)
            if diff:
                console.print(f"[bold]point {i}[/bold] ({point.id})", highlight=False)
                console.print(diff, highlight=False, markup=False)
    console.print(f"{len(the_plan.points)} points, {describe_load(load, slo)}, apply by {apply}: "
                  f"about {_minutes(estimate)}", highlight=False)  # fmt: skip


def print_notes(the_plan: plan.Plan, console: Console) -> None:
    """What the numbers will not be: said before a sweep starts, as in its report."""
    for note in the_plan.notes:
        console.print(f"[yellow]note[/yellow]: {escape(note)}", highlight=False)


def print_summary(folder: results.RunFolder, slo: float | None, console: Console) -> None:
    """Each config at its level, then the recommendation as `perf report` words it."""
    run = results.read_run(folder.path)
    try:
        found = findings.find(run, slo)
    except results.RunError:
        statuses = run.table["status"].value_counts().to_dict() if len(run.table) else {}
        console.print(f"[red]no successful measurement[/red] ({', '.join(f'{n} {s}' for s, n in statuses.items())}); "
                      f"see {folder.path / results.RESULTS}", highlight=False)  # fmt: skip
        if set(statuses) == {results.TIMED_OUT}:
            console.print(f"every config timed out at every level measured: {run.model} did not answer within the "
                          "measurements' deadlines; if its inputs decide how much it does (a decoupled model's "
                          "count of responses), give them with --input-data FILE", highlight=False)  # fmt: skip
        return
    searched = found.recommendation.race is not None
    view = Table("config", "level", "infer/s", "±95%", "p99 ms", "±95%", "n",
                 title="Each config at its searched level" if searched else "Best level of each point"
                 + (f" under p99 <= {slo:g} ms" if slo and slo != math.inf else ""))  # fmt: skip
    for row in found.ranked.to_dict("records"):
        view.add_row(str(row["label"]), str(row["load_level"]), f"{row['throughput']:.1f}", _ci(row["throughput_ci"]),
                     f"{row['p99_ms']:.1f}", _ci(row["p99_ci"]), str(int(row["repeats"])))  # fmt: skip
    console.print(view)
    said = report.verdict(found)
    console.print(f"[bold]{said['headline']}[/bold]", highlight=False)
    for line in said["lines"]:
        console.print(f"  {line}", highlight=False)
    for warning in said["warnings"]:
        console.print(f"  [yellow]{warning}[/yellow]", highlight=False)
    if len(found.faults):
        counts = found.faults["status"].value_counts().to_dict()
        console.print(f"[yellow]faults recorded[/yellow]: {counts} (see the error column)", highlight=False)
        for _, rows in run.table.groupby("point_id", sort=False):
            if set(rows["status"]) == {results.TIMED_OUT}:
                setting = ", ".join(f"{c}={_value(rows[c].iloc[0])}" for c in run.param_columns)
                console.print(f"[yellow]timed out at every level[/yellow]: {escape(setting)} did not answer within "
                              "its measurements' deadlines; it was not waited on", highlight=False)  # fmt: skip
    console.print(f"results: {folder.path / results.RESULTS}; the report: perf report {folder.path}", highlight=False)


def _ci(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.1f}"
