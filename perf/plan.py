"""Plan a sweep: parameters and values in, validated points out. Pure: no server, no files
written, so every mistake is found (all of them at once) before anything starts."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from perf import host, params, space
from perf.modelconfig import KIND_CPU, KIND_GPU, KIND_MODEL, ModelConfig, ModelInstanceGroup, for_host, format_config
from perf.repository import Repository

APPLY_MODES = ("reload", "restart")


class PlanError(ValueError):
    """The sweep as asked cannot run; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Param:
    """A swept setting: ``column`` is how it appears in the results table. A tied setting (a
    bare name on an ensemble) gives every model of ``targets`` the same value in each point;
    its ``model`` is the ensemble and its column the bare name."""

    model: str
    path: str
    values: tuple[Any, ...]
    targets: tuple[str, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        """The models whose configs the setting changes."""
        return self.targets or (self.model,)

    @property
    def column(self) -> str:
        return self.path if self.targets else f"{self.model}.{self.path}"


@dataclass(frozen=True)
class Point:
    """One combination of values, with the full config of every model it changes."""

    id: str
    values: dict[str, Any]  # column -> value
    configs: dict[str, ModelConfig] = field(repr=False)
    notes: tuple[str, ...] = ()
    baseline: bool = False  # the repository's own config


@dataclass(frozen=True)
class Plan:
    model: str
    models: list[str]  # the model and, for an ensemble, its composing models
    params: list[Param]
    points: list[Point]
    baseline: dict[str, ModelConfig] = field(repr=False)  # each model's config, adapted to the host
    notes: tuple[str, ...] = ()  # what the sweep measures differently from what the configs say
    calls: tuple[str, ...] = ()  # models it calls by name (BLS), loaded with it (--load); in ``models`` too

    @property
    def changes_callee(self) -> bool:
        """Whether a point changes a model the measured one calls by name: a copy of it under
        another name would not be called, so such a sweep makes each config live in place."""
        return bool(set(self.calls) & set(self.changed_models))

    @property
    def changed_models(self) -> list[str]:
        """Models some point changes, composing models first: the order to load them in, so an
        ensemble is reloaded after the models whose batch limits it must respect."""
        changed = {m for point in self.points for m in point.configs}
        return [m for m in [*self.models[1:], self.model] if m in changed]

    def configs_of(self, point: Point) -> dict[str, ModelConfig]:
        """Every changed model's config at ``point`` (the baseline's where the point keeps it)."""
        return {m: point.configs.get(m, self.baseline[m]) for m in self.changed_models}


def with_baseline(plan: Plan) -> Plan:
    """The plan with the repository's own config as a point: the reference every gain is
    measured against. Where a grid point has the same values, that point is the baseline."""
    values = {p.column: baseline_value(plan.baseline, p) for p in plan.params}
    written = {p.column: baseline_value(plan.baseline, p, params.read) for p in plan.params}
    unset = tuple(f"{column} unset in the repository: Triton reads it as {json.dumps(value)}"
                  for column, value in values.items() if written[column] != value)  # fmt: skip
    ident = point_id(values)
    if any(point.id == ident for point in plan.points):
        points = [replace(point, baseline=True, notes=(*point.notes, *unset)) if point.id == ident else point
                  for point in plan.points]  # fmt: skip
    else:
        points = [Point(ident, values, {}, ("the repository's own config", *unset), baseline=True), *plan.points]
    return replace(plan, points=points)


def baseline_value(
    baseline: dict[str, ModelConfig], param: Param, read_value: Callable[[ModelConfig, str], Any] = params.effective
) -> Any:
    """The repository's own value of a swept setting, as Triton reads it. A tied setting whose
    models differ has no one value: it is ``{model: value}`` then (and the baseline a point of
    its own)."""
    read = {m: read_value(baseline[m], param.path) for m in param.models}
    first = next(iter(read.values()))
    return first if all(v == first for v in read.values()) else read


def default_model(repo: Repository) -> str:
    """The model to measure when none is named: the repository's one top-level model, the one
    no ensemble calls (for the reference repository, ``ensemble_model``)."""
    called = {m for config in repo.configs.values() if is_ensemble(config) for m in composing_models(config)}
    top = [name for name in repo.names if name not in called]
    if len(top) != 1:
        raise PlanError(
            [f"{repo.path} has several top-level models ({', '.join(top or repo.names)}): pass --model NAME"]
        )
    return top[0]


def composing_models(config: ModelConfig) -> list[str]:
    return list(dict.fromkeys(step.model_name for step in config.ensemble_scheduling.step))


def is_ensemble(config: ModelConfig) -> bool:
    return config.platform == "ensemble"


def parse_param_args(args: list[str]) -> list[tuple[str, list[str] | None]]:
    """``--param NAME [--values V1 V2 ...]`` pairs, in order, from raw command-line words; a
    NAME without --values has None, for values generated from the config and the host."""
    pairs: list[tuple[str, list[str] | None]] = []
    i = 0
    while i < len(args):
        if args[i] != "--param" or i + 1 >= len(args) or args[i + 1].startswith("--"):
            raise PlanError([f"expected --param NAME [--values V1 V2 ...], got {' '.join(args[i : i + 2])!r}"])
        if i + 2 >= len(args) or args[i + 2] == "--param":
            pairs.append((args[i + 1], None))
            i += 2
            continue
        if args[i + 2] != "--values":
            raise PlanError([f"--param {args[i + 1]} needs --values after its name, or nothing to generate them"])
        j = i + 3
        while j < len(args) and args[j] != "--param":
            j += 1
        if j == i + 3:
            raise PlanError([f"--param {args[i + 1]} --values needs at least one value"])
        pairs.append((args[i + 1], args[i + 3 : j]))
        i = j
    return pairs


def _target(
    name: str, model: str, repo: Repository, members: list[str], calls: tuple[str, ...] = ()
) -> tuple[str, str, tuple[str, ...]]:
    """(model, path, targets) for a user's parameter name, or PlanError naming the choices. A
    bare name on an ensemble is tied: its targets are the composing models that have the setting.
    A model the measured one calls by name (``calls``) is set by its name only."""
    head, _, rest = name.partition(".")
    if rest and head in repo.configs:
        if head != model and head not in members and head not in calls:
            choices = ", ".join([model, *members, *calls])
            load = "" if members else f"; a model {model} calls itself (BLS) is loaded, and swept, with --load {head}"
            raise PlanError([f"{name}: {head} is not part of {model} (choose among: {choices}){load}"])
        return head, rest, ()
    if head in repo.configs:
        raise PlanError([f"{name}: name a setting after the model, as {head}.max_batch_size"])
    params.resolve(params.canonical_path(name))  # an unknown field is named before anything else
    if not is_ensemble(repo.configs[model]):
        return model, name, ()
    targets = tuple(m for m in members if _has_setting(repo.configs[m], name))
    if not targets:
        raise PlanError(
            [
                f"{name}: none of {model}'s composing models ({', '.join(members)}) has this setting; "
                f"name the model, as {members[0]}.{name} (or {model}.{name} for the ensemble itself)"
            ]
        )
    return model, name, targets


def _has_setting(config: ModelConfig, name: str) -> bool:
    """Whether a tied setting reaches this composing model: the batcher's settings only where
    it has a batcher with that setting, max_batch_size where it batches at all, nothing of a
    nested ensemble (which has no instances or batcher of its own)."""
    if is_ensemble(config):
        return False
    if params.canonical_path(name).partition(".")[0] in ("dynamic_batching", "sequence_batching"):
        if config.WhichOneof("scheduling_choice") is None:
            return False
        try:
            params.path_for(name, config)
        except params.ParamError:
            return False
    if name == "max_batch_size":
        return config.max_batch_size > 0
    return True


def build(
    model: str,
    raw_params: list[tuple[str, list[Any] | None]],
    repo: Repository,
    gpu_count: int,
    cores: int | None = None,
    response_cache: bool = True,
    calls: tuple[str, ...] = (),
) -> Plan:
    """Validate everything and expand the grid. Values may be strings from the command line
    (read as YAML) or already-typed values from a sweep file; None generates them from the
    models' configs, ``gpu_count`` and ``cores`` (default: the cores this process may use).
    ``response_cache`` False sweeps every model with its response cache off. ``calls``: the
    models the measured one calls by name (a BLS model's), loaded with it and sweepable."""
    repo.require([model])
    base = repo.configs[model]
    members = composing_models(base) if is_ensemble(base) else []
    repo.require([*members, *calls])
    calls = tuple(m for m in dict.fromkeys(calls) if m != model and m not in members)
    models = [model, *members, *calls]
    cores = host.cores() if cores is None else cores
    problems: list[str] = []
    swept: list[Param] = []
    kinds = _swept_kinds(raw_params, gpu_count)
    generated: list[Param] = []  # instance counts perf chose beside swept kinds: checked per point
    for name, raw_values in raw_params:
        path = name
        try:
            target, path, targets = _target(name, model, repo, members, calls)
            for m in targets or (target,):
                params.path_for(path, repo.configs[m])
            if raw_values is None:
                configs = [repo.configs[m] for m in targets or (target,)]
                values = space.generate(path, configs, gpu_count, cores, kinds)
            else:
                values = [params.parse_value(v) if isinstance(v, str) else v for v in raw_values]
            typed, bad = _coerce_all(path, values)
            problems.extend(f"{name.removesuffix(path)}{error}" for error in bad)
            if not typed:
                continue  # the good values still make points, for their problems to be found too
        except PlanError as error:
            problems.extend(error.problems)
            continue
        except params.ParamError as error:
            # The message names the field path; put the model the user wrote back in front.
            problems.append(f"{name.removesuffix(path)}{error}" if str(error).startswith(path) else str(error))
            continue
        param = Param(target, path, typed, targets)
        if twice := next((p for p in swept if _overlap(p, param)), None):
            problems.append(f"{name} is given twice" + (f" (as {twice.column})" if twice.column != name else ""))
            continue
        swept.append(param)
        if raw_values is None and kinds and params.canonical_path(path) == space.COUNT:
            generated.append(param)
    if not raw_params:
        problems.append("nothing to sweep: give at least one --param NAME [--values ...]")
    if not swept:
        raise PlanError(problems)
    baseline = {m: for_host(repo.configs[m], gpu_count) for m in models}
    notes = host_notes({m: repo.configs[m] for m in models}, gpu_count, response_cache)
    if not response_cache:
        for config in baseline.values():
            config.ClearField("response_cache")
    points = []
    # Instance counts change fastest: Triton adds or removes instances without reloading the
    # model when only the count differs, the cheapest apply there is.
    order = sorted(swept, key=lambda p: p.path in ("instance_count", "instance_group.count"))
    for combination in snake_product([p.values for p in order]):
        point = make_point(list(zip(order, combination, strict=True)), baseline, model, members)
        if any(space.over_limit(point.configs[m], gpu_count, cores) for p in generated for m in p.models):
            continue  # a generated count past its point's own kind (more GPU instances than worth it)
        problems.extend(f"point {_describe(point.values)}: {p}" for p in _validate(point, gpu_count))
        problems.extend(unnamed_changes(point, baseline, swept, model))
        points.append(point)
    problems = list(dict.fromkeys(problems))  # a change nobody named is the same in every point
    if any("is above max_batch_size" in p for p in problems) and any(p.path.endswith("max_batch_size") for p in swept):
        problems.append(
            "hint: a --param with one value is a fixed setting: add --param MODEL.preferred_batch_size "
            "--values '[]' to let Triton batch up to max_batch_size"
        )
    if problems:
        raise PlanError(problems)
    return Plan(model, models, swept, points, baseline, tuple(notes), calls)


def _swept_kinds(raw_params: list[tuple[str, list[Any] | None]], gpu_count: int) -> list[str] | None:
    """The instance kinds a sweep tries, where it sweeps ``kind`` (given, or generated): the
    instance counts perf generates beside it then reach the larger kind's limit."""
    for name, raw_values in raw_params:
        if space.KIND in (params.canonical_path(name), params.canonical_path(name.partition(".")[2])):
            values = space.generate(space.KIND, [], gpu_count, 0) if raw_values is None else raw_values
            return [v for v in map(str, values) if v in ModelInstanceGroup.Kind.DESCRIPTOR.values_by_name]
    return None


def host_notes(configs: dict[str, ModelConfig], gpu_count: int, response_cache: bool) -> list[str]:
    """What the sweep measures other than what the configs say, to be said wherever its
    numbers are: GPU instances run on the CPU of a host without GPUs; a response cache
    answers replayed inputs from memory."""
    notes = []
    for name, config in configs.items():
        gpu_groups = [i for i, g in enumerate(config.instance_group) if g.kind == KIND_GPU]
        if gpu_groups and gpu_count == 0:
            groups = ", ".join(f"instance_group[{i}]" for i in gpu_groups)
            notes.append(f"{name}: {groups} asks for KIND_GPU, but this host has no GPU: it runs as KIND_CPU "
                         "here, so these numbers are the CPU's, not the GPU's")  # fmt: skip
        if config.response_cache.enable:
            notes.append(
                f"{name}: response_cache is on: perf replays the same inputs, so repeated requests are answered "
                "from the cache and the numbers measure the cache, not the model; --no-response-cache sweeps "
                "with it off"
                if response_cache
                else f"{name}: response_cache switched off for the sweep"
            )
    return notes


# The scheduler is one choice (a protobuf oneof): setting one of these clears the others.
SCHEDULERS = ("dynamic_batching", "sequence_batching", "ensemble_scheduling")


def unnamed_changes(point: Point, baseline: dict[str, ModelConfig], swept: list[Param], model: str) -> list[str]:
    """The fields a point would change, drop or add that no swept setting names, one problem
    per model: a path into one block of a ``oneof`` clears the other block (the sequence
    batcher replaced by a dynamic one), and a whole block set from a value drops what the value
    leaves out. An ensemble's max_batch_size lowered to follow its composing models is named
    by the point's note."""
    problems = []
    for name, config in point.configs.items():
        named = [params.path_for(p.path, baseline[name]) for p in swept if name in p.models]
        followed = ["max_batch_size"] if name == model else []
        before, after = _leaves(baseline[name]), _leaves(config)
        changed = [path for path in dict.fromkeys([*before, *after]) if before.get(path) != after.get(path)]
        unnamed = [path for path in changed if not any(_under(path, n, baseline[name]) for n in [*named, *followed])]
        if not unnamed:
            continue
        shown = ", ".join(unnamed[:6]) + (f" and {len(unnamed) - 6} more" if len(unnamed) > 6 else "")
        lost = {path.split(".")[0].split("[")[0] for path in unnamed} & set(SCHEDULERS)
        why = (
            f"; {', '.join(SCHEDULERS)} are one choice in Triton's ModelConfig, so setting one drops the other"
            if lost
            else ""
        )
        problems.append(f"{name}: {', '.join(named) or 'the plan'} would also change {shown}, "
                        f"which no --param names{why}: name the field in the block the model uses")  # fmt: skip
    return problems


def _leaves(config: ModelConfig) -> dict[str, Any]:
    """Every set field of a config as ``dotted.path[i]: value``; a list of plain values is one leaf."""
    found: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                walk(f"{prefix}[{i}]", item)
        else:
            found[prefix] = value

    walk("", json_format.MessageToDict(config, preserving_proto_field_name=True))
    return found


def _under(path: str, named: str, config: ModelConfig) -> bool:
    """Whether a leaf's path lies in what a swept path names: ``instance_group.count`` names
    every group's count, ``instance_group[gpu].count`` the count of the group called gpu."""
    pattern, message = "", config
    for segment in named.split("."):
        field, _, index = segment.partition("[")
        index = index.rstrip("]")
        elements = getattr(message, field, None) if message is not None else None
        if index and not index.isdigit():  # a named element: its position in this config
            index = str(next((i for i, e in enumerate(elements or []) if e.name == index), -1))
        pattern += (r"\." if pattern else "") + re.escape(field) + (rf"\[{index}\]" if index else r"(\[\d+\])?")
        message = elements if isinstance(elements, Message) else _element(elements, int(index) if index else 0)
    return re.match(pattern + r"($|[.\[])", path) is not None


def _element(elements: Any, index: int) -> Message | None:
    """The ``index``-th message of a repeated field; None for a value, a map or no such element."""
    try:
        element = elements[index] if index >= 0 else None
    except (TypeError, IndexError, KeyError):
        return None
    return element if isinstance(element, Message) else None


def _coerce_all(path: str, values: list[Any]) -> tuple[tuple[Any, ...], list[str]]:
    """Every value typed, and every value's problem: all of them at once, not the first."""
    typed, bad = [], []
    for value in values:
        try:
            typed.append(params.coerce(path, value))
        except params.ParamError as error:
            bad.append(str(error))
    return tuple(typed), bad


def _overlap(a: Param, b: Param) -> bool:
    """Whether two swept settings set the same field of a model (``preferred_batch_size`` on an
    ensemble and ``classifier.preferred_batch_size``): the grid would say two things of it."""
    same_field = params.canonical_path(a.path) == params.canonical_path(b.path)
    return same_field and bool(set(a.models) & set(b.models))


def snake_product(lists: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """The grid in boustrophedon order: consecutive points differ in one value only, so each
    apply changes as little as it can."""
    if not lists:
        yield ()
        return
    head, tail = lists[0], lists[1:]
    rest = list(snake_product(tail))
    for i, value in enumerate(head):
        for combination in rest if i % 2 == 0 else reversed(rest):
            yield (value, *combination)


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


def point_id(values: dict[str, Any]) -> str:
    """Stable across runs and orderings, so a resumed sweep recognises finished points."""
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def make_point(
    assignment: list[tuple[Param, Any]], baseline: dict[str, ModelConfig], model: str, members: list[str]
) -> Point:
    """The configs a set of values gives, from ``baseline``: a sweep's point, and what
    `perf apply` writes back (from the repository's own configs)."""
    configs: dict[str, ModelConfig] = {}
    for param, value in assignment:
        for target in param.models:
            config = configs.setdefault(target, copy.deepcopy(baseline[target]))
            params.apply(config, param.path, value)
    notes = []
    if members:
        # An ensemble cannot batch more than what it calls: follow a lowered composing maximum.
        current = {m: configs.get(m, baseline[m]).max_batch_size for m in [model, *members]}
        lowest = min(current[m] for m in members)
        if current[model] > lowest:
            ensemble = configs.setdefault(model, copy.deepcopy(baseline[model]))
            ensemble.max_batch_size = lowest
            notes.append(f"{model}.max_batch_size lowered to {lowest} to match its composing models")
    values = {param.column: value for param, value in assignment}
    return Point(point_id(values), values, configs, tuple(notes))


def _validate(point: Point, gpu_count: int) -> list[str]:
    problems = []
    for name, config in point.configs.items():
        batchers = {"dynamic batching": config.dynamic_batching.preferred_batch_size,
                    "sequence batching": config.sequence_batching.oldest.preferred_batch_size}  # fmt: skip
        for batcher, preferred in batchers.items():
            if not preferred:
                continue
            if config.max_batch_size == 0:
                problems.append(f"{name}: {batcher} with preferred_batch_size {list(preferred)} needs "
                                "max_batch_size > 0 (0 means the model takes no batches)")  # fmt: skip
            elif max(preferred) > config.max_batch_size:
                problems.append(
                    f"{name}: preferred_batch_size {list(preferred)} is above max_batch_size {config.max_batch_size}"
                )
        problems.extend(f"{name}: {problem}" for problem in _kind_problems(config))
        if gpu_count == 0:
            for group in config.instance_group:
                if group.kind == KIND_GPU or group.gpus:
                    problems.append(f"{name}: KIND_GPU or gpus asked for, but this host has no GPU")
                    break
        else:
            for group in config.instance_group:
                if bad := [g for g in group.gpus if g >= gpu_count]:
                    problems.append(f"{name}: gpus {bad} do not exist (this host has {gpu_count})")
    return problems


# Backends that run on one kind of device only.
_GPU_ONLY = {"tensorrt", "tensorrt_plan"}
_CPU_ONLY = {"openvino"}


def _kind_problems(config: ModelConfig) -> list[str]:
    """Instance groups Triton would refuse: GPUs listed for a CPU group, a backend on a device
    it cannot run on."""
    backend = config.backend or config.platform
    problems = []
    for i, group in enumerate(config.instance_group):
        kind = ModelInstanceGroup.Kind.Name(group.kind)
        if group.gpus and group.kind in (KIND_CPU, KIND_MODEL):
            problems.append(f"instance_group[{i}] is {kind} but lists gpus {list(group.gpus)}: only KIND_GPU "
                            "and KIND_AUTO groups take gpus")  # fmt: skip
        if backend in _GPU_ONLY and group.kind == KIND_CPU:
            problems.append(f"instance_group[{i}] is KIND_CPU, but {backend} runs on GPUs only: use KIND_GPU")
        if backend in _CPU_ONLY and group.kind == KIND_GPU:
            problems.append(f"instance_group[{i}] is KIND_GPU, but {backend} runs on the CPU only: use KIND_CPU")
    return problems


def config_diff(before: ModelConfig, after: ModelConfig, name: str) -> str:
    """A point's config against the original, as a unified diff of config.pbtxt text."""
    lines = difflib.unified_diff(
        format_config(before).splitlines(),
        format_config(after).splitlines(),
        f"{name}/config.pbtxt (original)",
        f"{name}/config.pbtxt",
        lineterm="",
        n=1,
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class Timing:
    """What one step costs, for the estimate printed before a sweep (seconds)."""

    apply_reload: float = 2.0
    apply_restart: float = 8.0
    warmup: float = 2.0
    per_window_overhead: float = 0.3
    typical_windows: float = 3.0


def estimate_seconds(
    plan: Plan, levels: int, repeats: int, apply: str, window_ms: int, timing: Timing = Timing()
) -> float:
    apply_cost = timing.apply_reload * max(1, len(plan.params)) if apply == "reload" else timing.apply_restart
    per_measurement = timing.typical_windows * (window_ms / 1000 + timing.per_window_overhead) + 1.0
    return len(plan.points) * (apply_cost + timing.warmup + levels * repeats * per_measurement)
