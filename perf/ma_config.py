"""Triton Model Analyzer's profile YAML, read as perf's sweep options.

`perf sweep --file ma.yaml` takes a Model Analyzer 1.x ``profile`` config as it is, so a team
moving over keeps the file it already has and gets the same configs measured. Its
``model_config_parameters`` are expanded exactly as Model Analyzer's brute search expands them
(docs/config.md, docs/config_search.md): a leaf given a list is swept, a field that takes a list
(``preferred_batch_size``, ``instance_group``) needs a list of lists to be swept, dicts merge into
the repository's config and lists replace what the repository has. The configs that gives are
then written as perf's own settings (``MODEL.dotted.path``: values), which perf crosses into a
grid; that is only exact when the configs are a grid, so that is checked, not assumed.

Whatever perf cannot honour is said, one line per reason, never dropped in silence: the caller
prints :attr:`Translation.warnings` before the sweep and in ``--dry-run``. A key that is neither
Model Analyzer's nor valid where it stands is an error. Pure: the functions here read a parsed
YAML mapping and a :class:`~perf.repository.Repository`; only :func:`read_profile` opens one.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from perf import params
from perf.modelconfig import ModelConfig
from perf.plan import PlanError, composing_models, is_ensemble
from perf.repository import Repository, RepositoryError, open_repository, reference_repository

# Model Analyzer's own defaults (model_analyzer/config/input/config_defaults.py), for the
# searches it runs when the YAML leaves them out.
MA_DEFAULTS: dict[str, int] = {
    "run_config_search_min_concurrency": 1,
    "run_config_search_max_concurrency": 1024,
    "run_config_search_min_request_rate": 16,
    "run_config_search_max_request_rate": 8192,
    "run_config_search_min_instance_count": 1,
    "run_config_search_max_instance_count": 5,
    "run_config_search_min_model_batch_size": 1,
    "run_config_search_max_model_batch_size": 128,
}

# The keys perf reads and translates (the rest of Model Analyzer's keys are in NOT_HONOURED).
TRANSLATED = frozenset(
    {
        "model_repository", "profile_models", "ensemble_composing_models", "concurrency", "request_rate",
        "batch_sizes", "constraints", "objectives", "latency_budget", "min_throughput", "run_config_search_disable",
        "run_config_search_mode", "request_rate_search_enable", "triton_launch_mode", "triton_grpc_endpoint",
        "client_protocol", "perf_analyzer_flags", "model_type", "optuna_max_trials", "bls_composing_models",
        *MA_DEFAULTS,
    }
)  # fmt: skip

# Model Analyzer's keys perf does not honour, by the reason given to the user.
NOT_HONOURED: dict[str, tuple[str, ...]] = {
    "perf keeps every measurement in its run folder (--out); `perf report RUN` and `perf apply RUN` "
    "take the place of Model Analyzer's reports, checkpoints and output repository": (
        "export_path", "checkpoint_directory", "output_model_repository_path", "override_output_model_repository",
        "filename_model_inference", "filename_model_gpu", "filename_server_only", "inference_output_fields",
        "gpu_output_fields", "server_output_fields", "plots", "skip_summary_reports", "skip_detailed_reports",
        "num_configs_per_model", "num_top_model_configs", "perf_output", "perf_output_path", "config_file",
        "always_report_gpu_metrics",
    ),
    "perf starts its own embedded Triton (or measures the server --url names), so Model Analyzer's "
    "settings for the servers it launches do not apply": (
        "triton_docker_image", "triton_docker_mounts", "triton_docker_labels", "triton_docker_shm_size",
        "triton_docker_args", "triton_server_path", "triton_install_path", "triton_output_path",
        "triton_server_flags", "triton_server_environment", "triton_http_endpoint", "triton_metrics_url",
        "reload_model_disable",
    ),
    "perf runs its own perf_analyzer (tools/) with its own windows, retries and time limits": (
        "perf_analyzer_path", "perf_analyzer_timeout", "perf_analyzer_cpu_util", "perf_analyzer_max_auto_adjusts",
        "client_max_retries", "genai_perf_flags",
    ),
    "perf records the server's CPU and memory in every row, and GPU metrics wherever there are GPUs": (
        "collect_cpu_metrics", "dcgm_disable", "gpus", "monitoring_interval", "duration_seconds",
    ),
    "perf measures every point of its grid, or of its own budgeted search (--search, --budget), and searches "
    "each config's load itself, one model at a time": (
        "early_exit_enable", "run_config_search_max_binary_search_steps", "use_concurrency_formula",
        "concurrency_sweep_disable", "optuna_min_trials", "optuna_early_exit_threshold",
        "min_percentage_of_search_space", "max_percentage_of_search_space",
        "run_config_profile_models_concurrently_enable", "weighting", "cpu_only_composing_models",
    ),
}  # fmt: skip

MA_KEYS = TRANSLATED | {key for keys in NOT_HONOURED.values() for key in keys}

# What one entry of profile_models may hold (docs/config.md, <profile-model>).
MODEL_KEYS = frozenset(
    {
        "cpu_only", "parameters", "objectives", "constraints", "weighting", "model_config_parameters",
        "perf_analyzer_flags", "genai_perf_flags", "triton_server_flags", "triton_server_environment",
        "triton_docker_args",
    }
)  # fmt: skip
LOAD_KEYS = ("concurrency", "request_rate", "batch_sizes")

# Keys both formats have: they do not tell a Model Analyzer file from perf's own.
_SHARED = frozenset({"concurrency", "request_rate"})

# Constraints Model Analyzer knows; perf honours the p99 latency ceiling only.
_LATENCY_P99 = ("perf_latency_p99", "perf_latency")
_CONSTRAINTS = frozenset(
    {
        *_LATENCY_P99, "perf_throughput", "output_token_throughput", "perf_latency_avg", "perf_latency_p90",
        "perf_latency_p95", "gpu_used_memory",
        *(f"{kind}_{stat}" for kind in ("inter_token_latency", "time_to_first_token")
          for stat in ("p99", "p95", "p90", "p75", "p50", "p25", "min", "max", "avg")),
    }
)  # fmt: skip

# perf_analyzer flags perf has options for (Model Analyzer spells them with dashes).
_PA_FLAGS = {"shape": "shape", "input-data": "input_data", "measurement-interval": "measurement_interval",
             "measurement-request-count": "measurement_requests", "batch-size": "batch_size"}  # fmt: skip

# More configs than this is a typo more often than a plan (and a product that size is slow to list).
MAX_CONFIGS = 4096


@dataclass(frozen=True)
class Translation:
    """A Model Analyzer profile as perf's sweep: the model, perf's options by their ``--file``
    keys, the settings to cross (``MODEL.path``, values) and what perf does differently."""

    model: str
    options: dict[str, Any]
    params: list[tuple[str, list[Any]]]
    warnings: list[str] = field(default_factory=list)

    def as_sweep_file(self) -> dict[str, Any]:
        """The translation in the shape of perf's own sweep file, warnings as ``ma_warnings``."""
        return {"model": self.model, **self.options, "params": dict(self.params), "ma_warnings": list(self.warnings)}


def is_profile(data: dict[str, Any]) -> bool:
    """Whether a sweep file is Model Analyzer's: it has a key only Model Analyzer uses."""
    return any(key in MA_KEYS - _SHARED for key in data)


def read_profile(
    data: dict[str, Any],
    source: Path,
    model: str | None = None,
    repo: Path | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """``data`` (Model Analyzer's YAML, parsed from ``source``) as perf's sweep file. The model
    repository is ``repo`` (--repo) or the YAML's ``model_repository`` (relative to the current
    folder, as Model Analyzer reads it) or perf's reference repository."""
    where = repo or data.get("model_repository") or reference_repository()
    try:
        repository = open_repository(Path(str(where)).expanduser(), profile)
    except RepositoryError as error:
        hint = "" if repo else "; pass --repo PATH to read another"
        raise PlanError([f"{source}: model_repository: {error}{hint}"]) from None
    translation = translate(data, repository, model)
    options = translation.as_sweep_file()
    if not repo and data.get("model_repository"):
        options["repo"] = repository.path
    shown = {**translation.options, **({"repo": data["model_repository"]} if "repo" in options else {})}
    options["ma_warnings"].insert(0, "read as: " + command(translation.model, shown, translation.params))
    return options


def command(model: str, options: dict[str, Any], settings: list[tuple[str, list[Any]]]) -> str:
    """The `perf sweep` command line that says what a translation says, to move to for good."""
    words = ["perf", "sweep", "--model", model]
    if "repo" in options:
        words += ["--repo", str(options["repo"])]
    for name, values in settings:
        words += ["--param", name, "--values", *(_shown(v) for v in values)]
    for key, value in options.items():
        if key == "repo":
            continue
        flag = "--" + key.replace("_", "-")
        for item in value if isinstance(value, list) and key == "shape" else [value]:
            words += [flag, *(_shown(v) for v in (item if isinstance(item, list) else [item]))]
    return " ".join(shlex.quote(word) for word in words)


def _shown(value: Any) -> str:
    """A value as typed on perf's command line (read as YAML there)."""
    if isinstance(value, str):
        raw = json.loads(value) if value.startswith('"') else value
        return raw if params.parse_value(raw) == raw else value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict | bool) else str(value)


def translate(data: dict[str, Any], repo: Repository, model: str | None = None) -> Translation:
    """Model Analyzer's profile config as perf's sweep of one model (``model``, or the one the
    YAML profiles). PlanError lists every problem found, one line each."""
    problems = _key_problems(data)
    try:
        specs = _models(data["profile_models"], "profile_models") if "profile_models" in data else {}
        chosen = _choose(specs, model, repo) if specs else ""
    except PlanError as error:
        raise PlanError([*problems, *error.problems]) from None
    if problems:
        raise PlanError(problems)
    spec = specs[chosen]
    warnings: list[str] = []
    options: dict[str, Any] = {}
    for step in (_load, _objectives, _server, _client_flags, _search, _bls):
        try:
            step(data, spec, chosen, options, warnings)
        except PlanError as error:
            problems.extend(error.problems)
    try:
        swept = _settings(data, spec, chosen, repo, warnings)
    except PlanError as error:
        problems.extend(error.problems)
        swept = []
    if problems:
        raise PlanError(problems)
    warnings.extend(_not_honoured(data, spec, chosen, specs))
    return Translation(chosen, options, swept, warnings)


def _key_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    because = ", ".join(key for key in data if key in MA_KEYS - _SHARED)
    for key in data:
        if key not in MA_KEYS:
            close = difflib.get_close_matches(key, sorted(MA_KEYS), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            problems.append(f"{key}: not a Model Analyzer profile key{hint} (the file is read as Model "
                            f"Analyzer's for its {because}; perf's own options, such as --repeats, go on the "
                            "command line)")  # fmt: skip
    if "profile_models" not in data:
        problems.append("profile_models: missing; name the model to profile, as profile_models: [classifier]")
    return problems


def _models(value: Any, key: str) -> dict[str, dict[str, Any]]:
    """``profile_models`` (or ``ensemble_composing_models``) in any of its forms: a comma-separated
    string, a list of names or of ``{name: spec}``, or a mapping of name to spec."""
    if isinstance(value, str):
        value = [name.strip() for name in value.split(",") if name.strip()]
    entries: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        entries = list(value.items())
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                entries.append((item, {}))
            elif isinstance(item, dict):
                entries.extend(item.items())
            else:
                raise PlanError([f"{key}: {item!r} is not a model name or a {{name: settings}} mapping"])
    if not entries:
        raise PlanError([f"{key}: expected model names (a list, or a comma-separated string) or a mapping of "
                         f"model name to its settings, got {value!r}"])  # fmt: skip
    specs: dict[str, dict[str, Any]] = {}
    problems = []
    for name, spec in entries:
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            problems.append(f"{key}.{name}: expected a mapping of its settings ({', '.join(sorted(MODEL_KEYS))}), "
                            f"got {spec!r}")  # fmt: skip
            continue
        for bad in sorted(set(spec) - MODEL_KEYS):
            close = difflib.get_close_matches(bad, sorted(MODEL_KEYS), n=2, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else f"a model takes {', '.join(sorted(MODEL_KEYS))}"
            problems.append(f"{key}.{name}.{bad}: not a Model Analyzer model setting; {hint}")
        if isinstance(spec.get("parameters"), dict):
            for bad in sorted(set(spec["parameters"]) - set(LOAD_KEYS)):
                problems.append(f"{key}.{name}.parameters.{bad}: not a load parameter; "
                                f"parameters take {', '.join(LOAD_KEYS)}")  # fmt: skip
        elif spec.get("parameters") is not None:
            problems.append(f"{key}.{name}.parameters: expected a mapping of {', '.join(LOAD_KEYS)}")
        specs[str(name)] = spec
    if problems:
        raise PlanError(problems)
    return specs


def _choose(specs: dict[str, dict[str, Any]], model: str | None, repo: Repository) -> str:
    """The one model perf sweeps: ``model`` (--model) when the YAML profiles several."""
    names = list(specs)
    if model is not None and model not in specs:
        raise PlanError([f"--model {model}: profile_models names {', '.join(names)}; pick one of them"])
    if model is None and len(names) > 1:
        raise PlanError([f"profile_models names {len(names)} models ({', '.join(names)}); perf sweeps one model "
                         "at a time (with an ensemble's composing models): pass --model NAME to pick one"])  # fmt: skip
    chosen = model or names[0]
    if chosen not in repo.configs:
        raise PlanError([f"profile_models: {chosen} is not in {repo.path} (it has: {', '.join(repo.names)})"])
    return chosen


def levels(key: str, value: Any) -> list[int]:
    """Model Analyzer's list of numbers (load levels, batch sizes): a list, a comma-separated
    string, one number, or ``{start, stop, step}`` with ``stop`` included; sorted, as it sorts them."""
    expected = (f"{key}: expected whole numbers: a list ([1, 2, 4]), a comma-separated string ('1,2,4') or "
                f"{{start: 1, stop: 8, step: 1}}; got {value!r}")  # fmt: skip
    try:
        if isinstance(value, dict):
            if not {"start", "stop"} <= set(value) <= {"start", "stop", "step"}:
                raise ValueError
            start, stop, step = _whole(value["start"]), _whole(value["stop"]), _whole(value.get("step", 1))
            if start > stop or step < 1:
                raise ValueError
            numbers = list(range(start, stop + 1, step))
        elif isinstance(value, str):
            numbers = [_whole(part) for part in value.split(",")]
        elif isinstance(value, list):
            numbers = [_whole(item) for item in value]
        else:
            numbers = [_whole(value)]
    except (ValueError, TypeError):
        raise PlanError([expected]) from None
    if not numbers:
        raise PlanError([expected])
    return sorted(set(numbers))


def _whole(value: Any) -> int:
    if isinstance(value, bool | float | dict | list):
        raise ValueError(value)
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def doubled(low: int, high: int) -> list[int]:
    """Powers of two from ``low`` up to ``high``: the values Model Analyzer's automatic search
    walks through (a ``low`` of 0 starts at 1)."""
    values, value = [], max(1, low)
    while value <= high:
        values.append(value)
        value *= 2
    return values


def _setting(data: dict[str, Any], key: str) -> int:
    value = data.get(key, MA_DEFAULTS[key])
    try:
        return _whole(value)
    except (ValueError, TypeError):
        raise PlanError([f"{key}: expected a whole number, got {value!r}"]) from None


# --- load: concurrency, request rate, batch size ---------------------------------------------


def _load(data: dict, spec: dict, model: str, options: dict, warnings: list[str]) -> None:
    """The model's ``parameters`` over the global keys, as Model Analyzer reads them."""
    given = {key: (spec.get("parameters") or {}).get(key, data.get(key)) for key in LOAD_KEYS}
    found = {key: levels(key, value) for key, value in given.items() if value is not None}
    if "concurrency" in found and "request_rate" in found:
        raise PlanError(["concurrency and request_rate are both given; perf measures one kind of load per sweep: "
                         "keep one of them"])  # fmt: skip
    disabled = bool(data.get("run_config_search_disable"))
    rate_search = bool(data.get("request_rate_search_enable"))
    if "concurrency" in found:
        options["concurrency"] = found["concurrency"]
    elif "request_rate" in found:
        options["request_rate"] = [float(v) for v in found["request_rate"]]
    elif disabled:
        options["concurrency"] = [1]  # Model Analyzer's level when its search is off and none is given
    elif rate_search:
        low, high = (_setting(data, f"run_config_search_{b}_request_rate") for b in ("min", "max"))
        options["request_rate"] = [float(v) for v in doubled(low, high)]
        warnings.append(f"request_rate_search_enable: request rates {_span(options['request_rate'])} as Model "
                        "Analyzer's search would try them; it stops once throughput stops rising, perf measures "
                        "every level")  # fmt: skip
    elif any(f"run_config_search_{b}_concurrency" in data for b in ("min", "max")):
        low, high = (_setting(data, f"run_config_search_{b}_concurrency") for b in ("min", "max"))
        options["concurrency"] = doubled(low, high)
        warnings.append(f"run_config_search_min/max_concurrency: concurrency {_span(options['concurrency'])} as "
                        "Model Analyzer's search would try it; it stops once throughput stops rising, perf "
                        "measures every level")  # fmt: skip
    else:
        warnings.append("no concurrency given: Model Analyzer sweeps 1, 2, 4, ... 1024 until throughput stops "
                        "rising; perf searches each config's concurrency itself (doubling up to the knee, then "
                        "bisecting at the p99 SLO)")  # fmt: skip
    sizes = found.get("batch_sizes")
    if sizes:
        options["batch_size"] = sizes[0]
        if len(sizes) > 1:
            warnings.append(f"batch_sizes {sizes}: perf sends one client batch size per sweep; measuring "
                            f"{sizes[0]} only (run again with --batch-size N for the others)")  # fmt: skip


def _span(values: list[Any]) -> str:
    shown = [f"{v:g}" for v in values]
    return ", ".join(shown) if len(shown) <= 5 else f"{', '.join(shown[:3])}, ... {shown[-1]} ({len(shown)} levels)"


# --- objectives and constraints ----------------------------------------------------------------


def _objectives(data: dict, spec: dict, model: str, options: dict, warnings: list[str]) -> None:
    """The p99 ceiling becomes perf's SLO; what perf does not rank by is said."""
    constraints = spec.get("constraints") if spec.get("constraints") is not None else data.get("constraints")
    where = f"profile_models.{model}.constraints" if spec.get("constraints") is not None else "constraints"
    if not isinstance(constraints or {}, dict):
        raise PlanError([f"{where}: expected a mapping of metric to {{min: N}} or {{max: N}}, got {constraints!r}"])
    constraints = dict(constraints or {})
    if data.get("latency_budget") is not None:  # Model Analyzer's shorthand, over the constraint
        constraints["perf_latency_p99"] = {"max": data["latency_budget"]}
    if data.get("min_throughput") is not None:
        constraints["perf_throughput"] = {"min": data["min_throughput"]}
    problems, ignored = [], []
    for metric, bound in constraints.items():
        if metric not in _CONSTRAINTS:
            close = difflib.get_close_matches(metric, sorted(_CONSTRAINTS), n=2, cutoff=0.6)
            problems.append(f"{where}.{metric}: not a Model Analyzer constraint"
                            + (f"; did you mean {', '.join(close)}?" if close else ""))  # fmt: skip
            continue
        side = "min" if metric in ("perf_throughput", "output_token_throughput") else "max"
        if not isinstance(bound, dict) or set(bound) != {side} or not _number(bound[side]):
            problems.append(f"{where}.{metric}: expected {{{side}: N}}, got {bound!r}")
        elif metric in _LATENCY_P99:
            options["slo_p99_ms"] = float(bound[side])
        else:
            ignored.append(f"{metric} {side} {bound[side]}")
    if problems:
        raise PlanError(problems)
    if ignored:
        warnings.append(f"constraints {', '.join(ignored)}: perf's only constraint is the p99 latency SLO "
                        "(--slo-p99-ms); the report gives every config's throughput, latencies and memory")  # fmt: skip
    objectives = spec.get("objectives") if spec.get("objectives") is not None else data.get("objectives")
    if objectives is None:
        return
    weights = _weights(objectives)
    if {name for name, weight in weights.items() if weight} != {"perf_throughput"}:
        named = ", ".join(f"{name}: {weight}" if len(weights) > 1 else name for name, weight in weights.items())
        warnings.append(f"objectives {named}: perf ranks configs by throughput within the p99 SLO (ties broken by "
                        "cost: fewer instances, shorter queue delay, smaller batches), not by these")  # fmt: skip


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _weights(objectives: Any) -> dict[str, Any]:
    """Model Analyzer's objectives (a name, a comma-separated string, a list, or name: weight)."""
    if isinstance(objectives, str):
        objectives = [part.strip() for part in objectives.split(",") if part.strip()]
    if isinstance(objectives, list) and all(isinstance(o, str) for o in objectives):
        return dict.fromkeys(objectives, 1)
    if isinstance(objectives, dict) and all(isinstance(k, str) for k in objectives):
        return dict(objectives)
    raise PlanError([f"objectives: expected a metric name, a list of them or a mapping of metric to weight, "
                     f"got {objectives!r}"])  # fmt: skip


# --- the server and perf_analyzer -----------------------------------------------------------------


def _server(data: dict, spec: dict, model: str, options: dict, warnings: list[str]) -> None:
    mode = data.get("triton_launch_mode")
    if mode == "remote":
        options["url"] = str(data.get("triton_grpc_endpoint") or "localhost:8001")
        warnings.append(f"triton_launch_mode remote: perf measures the server at --url {options['url']}, and "
                        "unlike Model Analyzer in remote mode it loads every point's config there through the "
                        "model-control API (start Triton with --model-control-mode=explicit)")  # fmt: skip
    elif mode is not None:
        if mode not in ("local", "docker", "c_api"):
            raise PlanError([f"triton_launch_mode: expected local, docker, remote or c_api, got {mode!r}"])
        warnings.append(f"triton_launch_mode {mode}: perf starts its own embedded Triton (tools/), not "
                        + {"local": "the tritonserver on PATH", "docker": "a container",
                           "c_api": "Triton in-process"}[mode]
                        + "; use triton_launch_mode remote (perf's --url) to measure a server you run")  # fmt: skip
    if data.get("triton_grpc_endpoint") and mode != "remote":
        warnings.append("triton_grpc_endpoint: used only with triton_launch_mode remote (perf's --url)")
    if data.get("client_protocol") not in (None, "grpc"):
        warnings.append(f"client_protocol {data['client_protocol']}: perf drives Triton over gRPC")
    if data.get("model_type") not in (None, "generic"):
        warnings.append(f"model_type {data['model_type']}: perf measures requests, not tokens")


def _search(data: dict, spec: dict, model: str, options: dict, warnings: list[str]) -> None:
    """Model Analyzer's quick search (a hill climb) becomes perf's guided search, its Optuna
    search perf's (with ``optuna_max_trials`` its budget): both step or sample over the same
    grid and search each config's load, so neither goes with given load levels."""
    mode = data.get("run_config_search_mode")
    trials = data.get("optuna_max_trials")
    if mode not in (None, "brute", "quick", "optuna"):
        raise PlanError([f"run_config_search_mode: expected brute, quick or optuna, got {mode!r}"])
    if trials is not None and mode != "optuna":
        warnings.append("optuna_max_trials: used only with run_config_search_mode optuna")
    if mode in (None, "brute"):
        return
    if "concurrency" in options or "request_rate" in options:
        warnings.append(f"run_config_search_mode {mode}: not honoured with load levels given; perf measures the whole "
                        "grid of model_config_parameters at them, as Model Analyzer's brute search does")  # fmt: skip
        return
    if mode == "quick":
        options["search"] = "guided"
        warnings.append("run_config_search_mode quick: perf's --search guided, which steps over the same grid "
                        "toward the bottleneck model's relief (read from Triton's per-model queue and compute "
                        "times) where Model Analyzer's quick search climbs its own coordinates")  # fmt: skip
        return
    options["search"] = "optuna"
    if trials is not None:
        if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
            raise PlanError([f"optuna_max_trials: expected a whole number, 1 or more, got {trials!r}"])
        options["budget"] = str(trials)
    warnings.append(
        "run_config_search_mode optuna: perf's --search optuna (Optuna's TPE sampler over the same "
        "grid" + (f", at most {trials} configs" if trials is not None else "") + "), its best raced"
    )


def _client_flags(data: dict, spec: dict, model: str, options: dict, warnings: list[str]) -> None:
    """perf_analyzer_flags, global then the model's: those perf has options for become them."""
    flags: dict[str, Any] = {}
    for where, given in (("perf_analyzer_flags", data.get("perf_analyzer_flags")),
                         (f"profile_models.{model}.perf_analyzer_flags", spec.get("perf_analyzer_flags"))):  # fmt: skip
        if given is None:
            continue
        if not isinstance(given, dict):
            raise PlanError([f"{where}: expected a mapping of perf_analyzer flag to value, got {given!r}"])
        flags.update(given)
    ignored = []
    for flag, value in flags.items():
        option = _PA_FLAGS.get(flag)
        if option == "shape":
            shapes = [value] if isinstance(value, str) else value
            if not isinstance(shapes, list) or not all(isinstance(s, str) and ":" in s for s in shapes):
                raise PlanError([f"perf_analyzer_flags.shape: expected NAME:DIMS or a list of them, got {value!r}"])
            options["shape"] = shapes
        elif option == "input_data":
            if not isinstance(value, str) or not value:
                raise PlanError([f"perf_analyzer_flags.input-data: expected a file or folder's path, got {value!r}"])
            options["input_data"] = value
        elif option:
            options[option] = levels(f"perf_analyzer_flags.{flag}", value)[0]
        else:
            ignored.append(flag)
    if ignored:
        warnings.append(f"perf_analyzer_flags {', '.join(ignored)}: not passed on; perf runs perf_analyzer with its "
                        "own flags (it takes shape, input-data, measurement-interval, measurement-request-count and "
                        "batch-size from here)")  # fmt: skip


def _bls(data: dict, spec: dict, model: str, options: dict, warnings: list[str]) -> None:
    """bls_composing_models: the models a BLS model calls, loaded with it (perf's --load)."""
    if not data.get("bls_composing_models"):
        return
    called = _models(data["bls_composing_models"], "bls_composing_models")
    options["load"] = list(called)
    if swept := [name for name, settings in called.items() if settings]:
        warnings.append(f"bls_composing_models.{', '.join(swept)}: loaded, their settings not swept; sweep them "
                        f"with --param {swept[0]}.NAME --values ...")  # fmt: skip


def _not_honoured(data: dict, spec: dict, model: str, specs: dict[str, dict]) -> list[str]:
    """One line per reason for the keys perf does not use. A key set to false, null or empty
    asks for nothing, so nothing is lost by not reading it."""
    lines = []
    for reason, keys in NOT_HONOURED.items():
        given = [key for key in keys if key in data and data[key] not in (None, False, "", [], {})]
        if given:
            lines.append(f"not honoured: {', '.join(given)}: {reason}")
    own = [key for key in ("triton_server_flags", "triton_server_environment", "triton_docker_args",
                           "genai_perf_flags", "weighting") if spec.get(key)]  # fmt: skip
    if own:
        lines.append(f"not honoured: profile_models.{model}: {', '.join(own)}: perf starts its own Triton and "
                     "perf_analyzer, and sweeps one model")  # fmt: skip
    others = [name for name in specs if name != model]
    if others:
        lines.append(f"profile_models: measuring {model} only; {', '.join(others)} need a sweep each (--model NAME)")
    return lines


# --- model_config_parameters ---------------------------------------------------------------------


def _settings(data: dict, spec: dict, model: str, repo: Repository, warnings: list[str]) -> list[tuple[str, list]]:
    """The settings perf crosses, from the model's model_config_parameters (and its composing
    models', for an ensemble), or from Model Analyzer's automatic search when there are none."""
    config = repo.configs[model]
    disabled = bool(data.get("run_config_search_disable"))
    own = spec.get("model_config_parameters")
    where = f"profile_models.{model}.model_config_parameters"
    swept: list[tuple[str, list]] = []
    problems: list[str] = []
    if own is not None:
        swept.extend(_catch(problems, lambda: settings_of(own, config, model, where)))
    members: dict[str, dict] = {}
    if data.get("ensemble_composing_models"):
        members = _models(data["ensemble_composing_models"], "ensemble_composing_models")
    if is_ensemble(config):
        called = composing_models(config)
        for name, member in members.items():
            if name not in called:
                warnings.append(f"ensemble_composing_models.{name}: not a step of {model} ({', '.join(called)}); "
                                "left out, as Model Analyzer leaves it out")  # fmt: skip
                continue
            extra = sorted(set(member) - {"model_config_parameters", "cpu_only"})
            if extra:
                warnings.append(f"ensemble_composing_models.{name}: {', '.join(extra)} not honoured; perf reads a "
                                "composing model's model_config_parameters only")  # fmt: skip
            if member.get("model_config_parameters") is not None:
                swept.extend(_catch(problems, lambda n=name, m=member: settings_of(
                    m["model_config_parameters"], repo.configs[n], n,
                    f"ensemble_composing_models.{n}.model_config_parameters")))  # fmt: skip
        if own is None and not members and not disabled:
            problems.append(f"profile_models.{model}: {model} is an ensemble, which Model Analyzer searches with its "
                            "quick search (a hill climb) that perf does not do; write the composing models' settings "
                            f"to sweep under ensemble_composing_models ({', '.join(called)}), each with its "
                            "model_config_parameters")  # fmt: skip
        elif not disabled:
            warnings.append(f"{model} is an ensemble: Model Analyzer would search it with quick search, a hill climb "
                            "over part of these settings; perf measures every combination")  # fmt: skip
    elif members:
        warnings.append(f"ensemble_composing_models: not honoured, {model} is not an ensemble")
    if problems:
        raise PlanError(problems)
    if own is None and not members and not is_ensemble(config):
        if disabled:
            warnings.append("run_config_search_disable with no model_config_parameters: Model Analyzer measures the "
                            "repository's own config only, and so does perf (one point, the baseline)")  # fmt: skip
        else:
            swept = _automatic(data, spec, config, model, warnings)
    if spec.get("cpu_only") and own is not None:
        warnings.append(f"profile_models.{model}.cpu_only: only steers Model Analyzer's automatic search and its "
                        "GPU metrics; perf runs the instance kinds model_config_parameters write")  # fmt: skip
    if not swept:
        # Nothing differs from the repository's config: one point, the baseline itself.
        swept = [(f"{model}.max_batch_size", [config.max_batch_size])]
    return swept


def _catch(problems: list[str], make: Any) -> list[tuple[str, list]]:
    try:
        return make()
    except PlanError as error:
        problems.extend(error.problems)
        return []


def _automatic(data: dict, spec: dict, config: ModelConfig, model: str, warnings: list[str]) -> list[tuple[str, list]]:
    """Model Analyzer's automatic brute search written out as model_config_parameters: every
    instance count from its minimum to its maximum (one group, KIND_GPU or KIND_CPU for a
    cpu_only model), max_batch_size in powers of two, with the dynamic batcher on where the model
    can batch. Max batch sizes below the model's preferred batch sizes are left out: Model
    Analyzer skips those configs as illegal."""
    counts = list(range(_setting(data, "run_config_search_min_instance_count"),
                        _setting(data, "run_config_search_max_instance_count") + 1))  # fmt: skip
    if not counts:
        raise PlanError(["run_config_search_min_instance_count is above run_config_search_max_instance_count"])
    kind = "KIND_CPU" if spec.get("cpu_only") else "KIND_GPU"
    written: dict[str, Any] = {"instance_group": [[{"kind": kind, "count": counts}]]}
    sizes: list[int] = []
    skipped: list[int] = []
    if config.max_batch_size > 0:
        sizes = doubled(_setting(data, "run_config_search_min_model_batch_size"),
                        _setting(data, "run_config_search_max_model_batch_size"))  # fmt: skip
        least = max(config.dynamic_batching.preferred_batch_size, default=0)
        skipped = [size for size in sizes if size < least]
        sizes = [size for size in sizes if size >= least]
        if not sizes:
            raise PlanError([f"run_config_search_max_model_batch_size: every max_batch_size is below {model}'s "
                             f"preferred_batch_size {list(config.dynamic_batching.preferred_batch_size)}"])  # fmt: skip
        written["max_batch_size"] = sizes
        if config.WhichOneof("scheduling_choice") != "sequence_batching":
            written["dynamic_batching"] = {}
    swept = settings_of(written, config, model, "automatic search")
    grid = f"instance count {counts[0]} to {counts[-1]} ({kind})" + (
        f" x max_batch_size {_span(sizes)} with dynamic batching" if sizes else ""
    )
    total = len(counts) * max(1, len(sizes))
    warnings.append(f"no model_config_parameters: Model Analyzer's automatic brute search, written out: {grid}, "
                    f"{total} configs; Model Analyzer stops raising max_batch_size once throughput stops rising, "
                    "perf measures every one (narrow it with run_config_search_max_instance_count and "
                    "run_config_search_min/max_model_batch_size, or write model_config_parameters)")  # fmt: skip
    if skipped:
        warnings.append(f"max_batch_size {', '.join(map(str, skipped))} left out: below {model}'s preferred_batch_size "
                        f"{list(config.dynamic_batching.preferred_batch_size)}, configs Model Analyzer skips as "
                        "illegal")  # fmt: skip
    return swept


def settings_of(written: Any, config: ModelConfig, model: str, where: str) -> list[tuple[str, list[Any]]]:
    """One model's model_config_parameters as perf settings (``MODEL.path``, values) whose grid
    is exactly the configs Model Analyzer's brute search makes from them. Settings that keep the
    repository's value are left out; a set of configs that is not a grid is refused."""
    if not isinstance(written, dict):
        raise PlanError([f"{where}: expected a mapping of ModelConfig fields, got {written!r}"])
    configs = alternatives(written, where)
    bare = _one_group(configs, config)
    flats = []
    for patch in configs:
        flats.append(_flatten(patch, config, ModelConfig.DESCRIPTOR, "", bare, where))
    return [(f"{model}.{path}", [_literal(v) for v in values]) for path, values in _factor(flats, config, where)]


def alternatives(written: dict[str, Any], where: str = "model_config_parameters") -> list[dict[str, Any]]:
    """Every config Model Analyzer makes from model_config_parameters, each as the mapping it
    writes over the repository's config. A field takes one value of its type (a mapping for a
    message, a list for a repeated field) or a list of them to sweep; a mapping's fields and a
    list's elements are crossed."""
    return _message_alternatives(written, ModelConfig.DESCRIPTOR, where)


def _message_alternatives(value: Any, descriptor: Descriptor, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        raise PlanError([f"{where}: expected a mapping of {descriptor.name} fields, got {value!r}"])
    keys, options, problems = [], [], []
    for key, item in value.items():
        field_ = descriptor.fields_by_name.get(str(key))
        if field_ is None:
            close = difflib.get_close_matches(str(key), list(descriptor.fields_by_name), n=3, cutoff=0.6)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else f"{descriptor.name} has: " + ", ".join(descriptor.fields_by_name)
            )
            if descriptor is ModelConfig.DESCRIPTOR and str(key) in params.ALIASES:  # perf's short names
                hint = f"write it as {_nested(params.ALIASES[str(key)])}"
            problems.append(f"{where}.{key}: not a field of {descriptor.name}; {hint}")
            continue
        try:
            options.append(_field_alternatives(item, field_, f"{where}.{key}"))
            keys.append(key)
        except PlanError as error:
            problems.extend(error.problems)
    if problems:
        raise PlanError(problems)
    count = math.prod(len(o) for o in options)
    if count > MAX_CONFIGS:
        raise PlanError([f"{where}: {count} configs, more than {MAX_CONFIGS}; sweep fewer values at once"])
    return [dict(zip(keys, combination, strict=True)) for combination in itertools.product(*options)]


def _nested(path: str) -> str:
    """A dotted path as Model Analyzer's YAML writes it: ``instance_group: [{count: ...}]``."""
    head, _, rest = path.partition(".")
    if not rest:
        return f"{head}: ..."
    opening, closing = ("[{", "}]") if ModelConfig.DESCRIPTOR.fields_by_name[head].is_repeated else ("{", "}")
    return f"{head}: {opening}{rest.replace('.', ': {')}: ...{'}' * rest.count('.')}{closing}"


def _field_alternatives(value: Any, field_: FieldDescriptor, where: str) -> list[Any]:
    if value is None:
        raise PlanError([f"{where}: null; give a value, or leave {field_.name} out to keep the repository's"])
    if _one_value(value, field_):
        choices = [value]
    elif isinstance(value, list) and value and all(_one_value(v, field_) for v in value):
        choices = value
    else:
        raise PlanError([f"{where}: expected {_shape(field_)}, or a list of them to sweep; got {value!r}"])
    found = []
    for choice in choices:
        found.extend(_concrete(choice, field_, where))
    return found


def _one_value(value: Any, field_: FieldDescriptor) -> bool:
    """Whether ``value`` is one value of the field (not a list of values to sweep)."""
    if _is_map(field_) or (field_.message_type is not None and not field_.is_repeated):
        return isinstance(value, dict)
    if field_.message_type is not None:
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if field_.is_repeated:
        return isinstance(value, list) and not any(isinstance(v, list | dict) or v is None for v in value)
    return not isinstance(value, list | dict)


def _shape(field_: FieldDescriptor) -> str:
    if _is_map(field_):
        return f"a mapping of {field_.name} keys"
    if field_.message_type is not None:
        one = f"a mapping of {field_.message_type.name} fields"
        return f"a list of {one}s" if field_.is_repeated else one
    return f"a list of values (one {field_.name})" if field_.is_repeated else "a single value"


def _concrete(choice: Any, field_: FieldDescriptor, where: str) -> list[Any]:
    """The configs one choice stands for: a mapping or a list may hold sweeps of its own."""
    if _is_map(field_):
        value_field = field_.message_type.fields_by_name["value"]
        keys = list(choice)
        options = [_field_alternatives(choice[k], value_field, f"{where}.{k}") for k in keys]
        return [dict(zip(keys, combination, strict=True)) for combination in itertools.product(*options)]
    if field_.message_type is None:
        return [choice]
    if field_.is_repeated:
        options = [_message_alternatives(item, field_.message_type, f"{where}[{i}]") for i, item in enumerate(choice)]
        return [list(combination) for combination in itertools.product(*options)]
    return _message_alternatives(choice, field_.message_type, where)


def _is_map(field_: FieldDescriptor) -> bool:
    return field_.message_type is not None and field_.message_type.GetOptions().map_entry


class _Mark:
    """A value no config has: a block present with nothing set in it, or a field left unset."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PRESENT = _Mark("<present>")  # `dynamic_batching: {}`: the block on, with Triton's defaults
ABSENT = _Mark("<absent>")


def _one_group(configs: list[dict[str, Any]], config: ModelConfig) -> bool:
    """Whether instance_group is one group throughout, so it can be named as perf's short
    ``instance_group.count`` (which perf orders to change fastest) rather than ``[0]``."""
    return len(config.instance_group) <= 1 and all(len(c.get("instance_group", [None])) == 1 for c in configs)


def _flatten(
    patch: dict[str, Any], current: Message, descriptor: Descriptor, prefix: str, bare: bool, where: str
) -> dict[str, Any]:
    """A config as perf's leaves (``dotted.path``: value), Model Analyzer's way: a mapping merges
    into the repository's block, a list replaces the repository's list whole."""
    leaves: dict[str, Any] = {}
    for key, value in patch.items():
        field_ = descriptor.fields_by_name[key]
        path = f"{prefix}{key}"
        if _is_map(field_):
            value_type = field_.message_type.fields_by_name["value"].message_type
            if value_type is None or "string_value" not in value_type.fields_by_name:
                raise PlanError([f"{where}: {path} cannot be swept by perf (only parameters.KEY: string_value)"])
            for name, entry in value.items():
                if not isinstance(entry, dict) or set(entry) != {"string_value"}:
                    raise PlanError([f"{where}.{key}.{name}: expected {{string_value: VALUE}}, got {entry!r}"])
                leaves[f"{path}.{name}"] = entry["string_value"]
        elif field_.message_type is not None and not field_.is_repeated:
            if not value:
                leaves[path] = PRESENT
            inner = getattr(current, key) if current is not None else None
            leaves.update(_flatten(value, inner, field_.message_type, f"{path}.", False, where))
        elif field_.message_type is not None:
            leaves.update(_replace(value, current, field_, path, bare and prefix == "", where))
        else:
            leaves[path] = value
    return leaves


def _replace(
    items: list[dict[str, Any]], current: Message | None, field_: FieldDescriptor, path: str, bare: bool, where: str
) -> dict[str, Any]:
    """A list of messages (instance_group) replacing the repository's: its elements' fields,
    and every field the repository's element set that the new one leaves out, back to its
    default, as the replaced element would have it."""
    existing = list(getattr(current, field_.name)) if current is not None else []
    if len(items) < len(existing):
        raise PlanError([f"{where}: {path} lists {len(items)} element(s) where the repository's config has "
                         f"{len(existing)}; Model Analyzer replaces the whole list, perf can change and add "
                         "elements but not remove them: list every element"])  # fmt: skip
    leaves: dict[str, Any] = {}
    for i, item in enumerate(items):
        element = path if bare else f"{path}[{i}]"
        old = existing[i] if i < len(existing) else None
        leaves.update(_flatten(item, old, field_.message_type, f"{element}.", False, where))
        if old is not None:
            leaves.update(_resets(old, item, element, where))
    return leaves


def _resets(old: Message, new: dict[str, Any], path: str, where: str) -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for field_, value in old.ListFields():
        name = field_.name
        if name in new:
            if field_.message_type is not None and not field_.is_repeated and not _is_map(field_):
                leaves.update(_resets(value, new[name], f"{path}.{name}", where))
            continue
        if field_.message_type is not None:
            raise PlanError([f"{where}: {path}.{name}: Model Analyzer replaces {path} whole, dropping the "
                             f"repository's {name}, which perf cannot drop: write {name} in the YAML as you want "
                             "it kept"])  # fmt: skip
        if field_.is_repeated:
            leaves[f"{path}.{name}"] = []
        elif field_.type == FieldDescriptor.TYPE_ENUM:
            leaves[f"{path}.{name}"] = field_.enum_type.values_by_number[field_.default_value].name
        else:
            leaves[f"{path}.{name}"] = field_.default_value
    return leaves


def _factor(flats: list[dict[str, Any]], config: ModelConfig, where: str) -> list[tuple[str, list[Any]]]:
    """The configs as settings to cross: every path with the values it takes. Exact only when
    the configs are every combination of those values, which is checked. A path some configs
    leave alone takes the repository's value there; a setting that only keeps the repository's
    value is left out. Blocks switched on come first, so the settings in them apply after."""
    paths = list(dict.fromkeys(path for flat in flats for path in flat))
    rows = []
    for flat in flats:
        rows.append({path: flat[path] if path in flat else _current(config, path, flat) for path in paths})
    unique = {_key([row[p] for p in paths]): row for row in rows}
    columns = {path: list({_key(row[path]): row[path] for row in unique.values()}.values()) for path in paths}
    problems = []
    for path, values in columns.items():
        if len(values) > 1 and any(v is ABSENT for v in values):
            problems.append(f"{where}: {path} is set in some configs only; perf cannot leave it unset in the others "
                            "(set it in every one)")  # fmt: skip
    if problems:
        raise PlanError(problems)
    varying = [path for path, values in columns.items() if len(values) > 1]
    if len(unique) != math.prod(len(values) for values in columns.values()):
        raise PlanError([f"{where}: its {len(unique)} configs are not every combination of {', '.join(varying)}; "
                         "perf crosses each setting with every other: write the alternatives as independent lists, "
                         "or make one YAML per group of configs"])  # fmt: skip
    settings = []
    for path, values in columns.items():
        if len(values) == 1 and _key(values[0]) == _key(_current(config, path, {})):
            continue  # the repository's own value: nothing to set
        settings.append((path, values))
    return sorted(settings, key=lambda setting: setting[1][0] is not PRESENT)


def _current(config: ModelConfig, path: str, flat: dict[str, Any]) -> Any:
    """The repository's value at ``path``, as a config that leaves it alone has it."""
    steps = params.resolve(path)
    message: Any = config
    for step in steps[:-1]:
        message = _step_into(message, step)
        if message is ABSENT:
            return ABSENT
    last = steps[-1]
    if last.key is not None:
        entries = getattr(message, last.field.name)
        return entries[last.key].string_value if last.key in entries else ABSENT
    if last.field.message_type is not None and not last.field.is_repeated:
        inside = any(p.startswith((f"{path}.", f"{path}[")) for p in flat)
        return PRESENT if inside or message.HasField(last.field.name) else ABSENT
    if last.one or (last.field.is_repeated and last.field.message_type is not None):
        message = _step_into(message, last)
        return message if message is ABSENT else json_format.MessageToDict(message, preserving_proto_field_name=True)
    value = getattr(message, last.field.name)
    if last.field.type == FieldDescriptor.TYPE_ENUM:
        names = last.field.enum_type.values_by_number
        return [names[v].name for v in value] if last.field.is_repeated else names[value].name
    return list(value) if last.field.is_repeated else value


def _step_into(message: Message, step: params.Step) -> Any:
    value = getattr(message, step.field.name)
    if not step.field.is_repeated:
        return value
    elements = list(value)
    if step.index is not None:
        return elements[step.index] if step.index < len(elements) else ABSENT
    return elements[0] if len(elements) == 1 else ABSENT  # a bare path: the one group


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _literal(value: Any) -> Any:
    """A value as perf's plan reads it: strings are read as YAML there, so a string is given as
    a quoted YAML string (``""`` stays empty, ``"1"`` stays a string); a block switched on is ``{}``."""
    if value is PRESENT:
        return {}
    return json.dumps(value) if isinstance(value, str) else value
