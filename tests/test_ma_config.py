"""Model Analyzer's profile YAML read by `perf sweep --file`: pure, no server (the CLI test is a
--dry-run, which plans and exits before any server would start)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from perf import ma_config, plan
from perf.modelconfig import ModelConfig, ModelInstanceGroup
from perf.repository import open_repository
from perf.sweep_command import options

from .conftest import REPO

ROOT = REPO.parent
EXAMPLE = ROOT / "bench" / "ma_grid.yaml"
repo = open_repository(REPO)


def translate(text: str, model: str | None = None, repository=repo) -> ma_config.Translation:
    return ma_config.translate(yaml.safe_load(text), repository, model)


def planned(text: str, model: str | None = None, repository=repo) -> tuple[plan.Plan, ma_config.Translation]:
    """The plan perf runs for a Model Analyzer YAML: its grid and the repository's own config."""
    t = translate(text, model, repository)
    return plan.with_baseline(plan.build(t.model, list(t.params), repository, 0, 2)), t


def problems(text: str, model: str | None = None, repository=repo) -> str:
    with pytest.raises(plan.PlanError) as error:
        planned(text, model, repository)
    return str(error.value)


def settings(config: ModelConfig) -> tuple[Any, ...]:
    """What these tests sweep, read from a point's full config: instance count and kind,
    max_batch_size, preferred batch sizes, queue delay."""
    group = config.instance_group[0]
    batching = config.dynamic_batching
    kind = ModelInstanceGroup.Kind.Name(group.kind)
    return (
        group.count,
        kind,
        config.max_batch_size,
        tuple(batching.preferred_batch_size),
        batching.max_queue_delay_microseconds,
    )


def points(p: plan.Plan, model: str = "classifier") -> tuple[set[tuple[Any, ...]], tuple[Any, ...]]:
    """The set of configs the plan measures, and the baseline's."""
    configs = [{**p.baseline, **point.configs}[model] for point in p.points]
    assert len(configs) == len({point.id for point in p.points}), "a config planned twice"
    return {settings(c) for c in configs}, settings(p.baseline[model])


# The repository's classifier (count 2, KIND_GPU served as KIND_CPU here: no GPU; max_batch_size
# 64; preferred [32, 64]; 100 us), which Model Analyzer measures as its default config too.
BASELINE = (2, "KIND_CPU", 64, (32, 64), 100)


def test_the_example_plans_model_analyzers_grid_and_the_default_config() -> None:
    p, t = planned(EXAMPLE.read_text())
    grid = {(count, "KIND_CPU", mbs, (), 100) for count, mbs in itertools.product([1, 2], [8, 16])}
    assert points(p) == (grid | {BASELINE}, BASELINE)
    assert len(p.points) == 5  # Model Analyzer's 4 configs and its default one (bench/ma_grid.sh's grid)
    assert t.options == {"concurrency": [1, 2, 4], "slo_p99_ms": 50.0}
    assert t.model == "classifier"


def test_nested_dynamic_batching_leaves_are_crossed() -> None:
    p, _ = planned("""
profile_models:
  classifier:
    model_config_parameters:
      max_batch_size: [16, 32]
      dynamic_batching:
        max_queue_delay_microseconds: [100, 200, 500]
        preferred_batch_size: [[8], [8, 16]]      # a list field: a list of lists to sweep it
""")
    grid = {(2, "KIND_CPU", mbs, pbs, delay)
            for mbs, delay, pbs in itertools.product([16, 32], [100, 200, 500], [(8,), (8, 16)])}  # fmt: skip
    assert len(grid) == 12
    assert points(p) == (grid | {BASELINE}, BASELINE)


def test_one_list_instance_group_sweeps_the_count_inside_it() -> None:
    # kind KIND_GPU is the repository's own: nothing to set (and served as KIND_CPU here).
    p, t = planned("""
profile_models:
  classifier:
    model_config_parameters:
      instance_group:
        - kind: KIND_GPU
          count: [1, 2, 3]
""")
    assert t.params == [("classifier.instance_group.count", [1, 2, 3])]
    assert points(p) == ({(count, "KIND_CPU", 64, (32, 64), 100) for count in (1, 2, 3)}, BASELINE)
    assert [point.baseline for point in p.points].count(True) == 1  # count 2 is the repository's config


def test_list_of_lists_instance_group_sweeps_whole_groups() -> None:
    p, _ = planned("""
profile_models:
  classifier:
    model_config_parameters:
      instance_group:
        - - {kind: KIND_CPU, count: 1}
        - - {kind: KIND_CPU, count: 3}
      max_batch_size: [8, 16]
      dynamic_batching: {preferred_batch_size: []}
""")
    grid = {(count, "KIND_CPU", mbs, (), 100) for count, mbs in itertools.product([1, 3], [8, 16])}
    assert points(p) == (grid | {BASELINE}, BASELINE)


def test_a_group_replaced_whole_loses_the_kind_it_does_not_name() -> None:
    # Model Analyzer replaces instance_group whole: a group that names no kind is KIND_AUTO.
    p, _ = planned("""
profile_models:
  classifier:
    model_config_parameters:
      instance_group: [{count: [1, 2]}]
""")
    grid = {(count, "KIND_AUTO", 64, (32, 64), 100) for count in (1, 2)}
    assert points(p) == (grid | {BASELINE}, BASELINE)


def test_an_empty_block_switches_it_on(tmp_path: Path) -> None:
    folder = tmp_path / "classifier"
    folder.mkdir()
    text = (REPO / "classifier" / "config.pbtxt").read_text()
    (folder / "config.pbtxt").write_text(re.sub(r"dynamic_batching \{.*?\n\}\n", "", text, flags=re.S))
    bare = open_repository(tmp_path)
    assert not bare.configs["classifier"].HasField("dynamic_batching")
    p, _ = planned("""
profile_models:
  classifier:
    model_config_parameters:
      dynamic_batching: [{}]
      max_batch_size: [8, 16]
""", repository=bare)  # fmt: skip
    grid = [point for point in p.points if not point.baseline]
    assert {point.configs["classifier"].max_batch_size for point in grid} == {8, 16}
    assert all(point.configs["classifier"].HasField("dynamic_batching") for point in grid)
    assert not p.baseline["classifier"].HasField("dynamic_batching")


def test_an_ensembles_composing_models_are_crossed() -> None:
    p, t = planned("""
profile_models: [ensemble_model]
ensemble_composing_models:
  classifier:
    model_config_parameters:
      instance_group: [[{kind: KIND_GPU, count: [1, 2]}]]
  preprocessor:
    model_config_parameters:
      parameters: {preprocessing: {string_value: [per_image, batched]}}
""")
    seen = set()
    for point in p.points:
        configs = {**p.baseline, **point.configs}
        seen.add((configs["classifier"].instance_group[0].count,
                  configs["preprocessor"].parameters["preprocessing"].string_value))  # fmt: skip
    assert seen == set(itertools.product([1, 2], ["per_image", "batched"]))
    assert len(p.points) == 4  # the repository's own config is one of them
    assert any("quick search" in w for w in t.warnings)


def test_model_analyzers_documented_sweeps_count_as_its_docs_say() -> None:
    # docs/config_search.md: 2 max_batch_size x 2 queue delays x 2 instance counts = 8 configs.
    assert len(ma_config.alternatives({"max_batch_size": [6, 8],
                                       "dynamic_batching": {"max_queue_delay_microseconds": [200, 300]},
                                       "instance_group": [{"kind": "KIND_GPU", "count": [1, 2]}]})) == 8  # fmt: skip
    # docs/config.md: a list of groups is one value (two groups); a list of lists sweeps them.
    two_groups = [{"kind": "KIND_GPU", "count": 1}, {"kind": "KIND_CPU", "count": 1}]
    assert ma_config.alternatives({"instance_group": two_groups}) == [{"instance_group": two_groups}]
    swept = {"dynamic_batching": {"max_queue_delay_microseconds": [200, 400, 600]},
             "instance_group": [[two_groups[0]], [two_groups[1]]]}  # fmt: skip
    assert len(ma_config.alternatives(swept)) == 6
    # A list field's one value is a list; [8, 16] is one preferred_batch_size, not two.
    assert ma_config.alternatives({"dynamic_batching": {"preferred_batch_size": [8, 16]}}) == [
        {"dynamic_batching": {"preferred_batch_size": [8, 16]}}
    ]


def test_automatic_search_is_written_out_as_its_grid() -> None:
    p, t = planned("""
profile_models: [classifier]
run_config_search_max_instance_count: 2
run_config_search_min_model_batch_size: 16
""")
    grid = {(count, "KIND_CPU", mbs, (32, 64), 100) for count, mbs in itertools.product([1, 2], [64, 128])}
    assert points(p) == (grid, BASELINE)  # the baseline is one of them
    said = "\n".join(t.warnings)
    assert "automatic brute search" in said
    assert "max_batch_size 16, 32 left out" in said  # below the preferred sizes: illegal for Model Analyzer too
    assert "no concurrency given" in said


def test_what_perf_does_not_honour_is_listed() -> None:
    t = translate("""
model_repository: /models
export_path: /tmp/ma
checkpoint_directory: /tmp/ma/checkpoints
triton_launch_mode: docker
triton_docker_image: nvcr.io/nvidia/tritonserver:24.10-py3
run_config_search_mode: quick
early_exit_enable: false          # asks for nothing: not listed
perf_analyzer_flags: {percentile: 95, measurement-interval: 2000}
profile_models:
  classifier:
    cpu_only: true
    objectives: [perf_latency_p99]
    constraints: {perf_latency_p99: {max: 40}, gpu_used_memory: {max: 200}}
    parameters: {batch_sizes: [1, 4], concurrency: "1,2"}
    model_config_parameters:
      max_batch_size: [32, 64]
""")
    said = "\n".join(t.warnings)
    for expected in ("export_path", "checkpoint_directory", "triton_docker_image", "triton_launch_mode docker",
                     "run_config_search_mode quick", "perf_analyzer_flags percentile", "objectives perf_latency_p99",
                     "gpu_used_memory max 200", "batch_sizes [1, 4]", "cpu_only"):  # fmt: skip
        assert expected in said, expected
    assert "early_exit_enable" not in said
    assert t.options == {"concurrency": [1, 2], "batch_size": 1, "slo_p99_ms": 40.0, "measurement_interval": 2000}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("quick", {"search": "guided"}), ("optuna", {"search": "optuna", "budget": "20"}), ("brute", {})],
)
def test_model_analyzers_searches_become_perfs(mode: str, expected: dict[str, str]) -> None:
    """Quick search (a hill climb) becomes the guided search, Optuna's with its trials the
    budget; the command perf prints says so. With load levels given, the grid is measured."""
    text = f"""
profile_models: {{classifier: {{model_config_parameters: {{max_batch_size: [32, 64]}}}}}}
run_config_search_mode: {mode}
optuna_max_trials: 20
"""
    t = translate(text)
    assert {k: v for k, v in t.options.items() if k in ("search", "budget")} == expected
    said = "\n".join(t.warnings)
    assert all(f"--{k} {v}" in ma_config.command(t.model, t.options, t.params) for k, v in expected.items())
    assert ("optuna_max_trials: used only with run_config_search_mode optuna" in said) == (mode != "optuna")
    assert "not honoured: optuna_max_trials" not in said
    levels = translate(text + "concurrency: [1, 2]\n")
    assert "search" not in levels.options
    if mode != "brute":
        assert f"run_config_search_mode {mode}: not honoured with load levels given" in "\n".join(levels.warnings)


def mcp(settings: str) -> str:
    """A profile of the classifier with these model_config_parameters (YAML flow style)."""
    return f"profile_models: {{classifier: {{model_config_parameters: {settings}}}}}"


NOT_A_GRID = """profile_models:
  classifier:
    model_config_parameters:
      dynamic_batching:
        - {max_queue_delay_microseconds: 100, preferred_batch_size: [8]}
        - {max_queue_delay_microseconds: 500, preferred_batch_size: [16]}"""

MALFORMED = [
    ("profile_models: [classifier]\nexportpath: x", "not a Model Analyzer profile key; did you mean export_path?"),
    ("export_path: x", "profile_models: missing"),
    ("profile_models: {classifier: {paramters: {}}}", "not a Model Analyzer model setting; did you mean parameters?"),
    (mcp("{instance_groups: [{count: 1}]}"), "not a field of ModelConfig; did you mean instance_group?"),
    (mcp("{instance_count: [1, 2]}"), "write it as instance_group: [{count: ...}]"),
    (mcp("{max_batch_size: {a: 1}}"), "max_batch_size: expected a single value, or a list of them to sweep"),
    (mcp("{dynamic_batching: {preferred_batch_size: 8}}"), "preferred_batch_size: expected a list of values"),
    (mcp("{max_batch_size: null}"), "max_batch_size: null"),
    ("profile_models: [classifier]\nconcurrency: [1, many]", "concurrency: expected whole numbers"),
    ("profile_models: [classifier]\nconcurrency: 2\nrequest_rate: 10", "concurrency and request_rate are both given"),
    ("profile_models: [classifier]\nconstraints: {perf_latency_p99: 50}", "perf_latency_p99: expected {max: N}"),
    ("profile_models: [classifier, preprocessor]", "names 2 models (classifier, preprocessor); perf sweeps one model"),
    ("profile_models: [nothing]", "profile_models: nothing is not in"),
    ("profile_models: [ensemble_model]", "ensemble_model is an ensemble"),
    (NOT_A_GRID, "its 2 configs are not every combination of dynamic_batching.max_queue_delay_microseconds"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), MALFORMED)
def test_a_malformed_config_is_refused_clearly(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_every_problem_is_told_at_once() -> None:
    said = problems("""
profile_models: {classifier: {model_config_parameters: {instance_groups: [], max_batch_size: [8, x]}}}
concurrency: [1, many]
""")
    assert "instance_groups" in said and "concurrency" in said


def test_perf_cannot_remove_an_instance_group(tmp_path: Path) -> None:
    folder = tmp_path / "classifier"
    folder.mkdir()
    text = (REPO / "classifier" / "config.pbtxt").read_text()
    two = text.replace("instance_group [\n  {", "instance_group [\n  { count: 1 kind: KIND_CPU },\n  {")
    (folder / "config.pbtxt").write_text(two)
    said = problems("profile_models: {classifier: {model_config_parameters: {instance_group: [{count: [1, 2]}]}}}",
                    repository=open_repository(tmp_path))  # fmt: skip
    assert "lists 1 element(s) where the repository's config has 2" in said


def test_model_picks_one_of_several() -> None:
    text = "profile_models: {classifier: {parameters: {concurrency: 4}}, preprocessor: {}}"
    t = translate(text, model="classifier")
    assert t.model == "classifier" and t.options["concurrency"] == [4]
    assert any("preprocessor need a sweep each" in w for w in t.warnings)
    with pytest.raises(plan.PlanError, match="pick one of them"):
        translate(text, model="ensemble_model")


def test_levels_read_as_model_analyzer_reads_them() -> None:
    assert ma_config.levels("concurrency", {"start": 2, "stop": 64, "step": 8}) == [2, 10, 18, 26, 34, 42, 50, 58]
    assert ma_config.levels("concurrency", {"start": 1, "stop": 4}) == [1, 2, 3, 4]
    assert ma_config.levels("batch_sizes", "4, 1,2") == [1, 2, 4]
    assert ma_config.levels("batch_sizes", 8) == [8]
    assert ma_config.doubled(1, 100) == [1, 2, 4, 8, 16, 32, 64]


def test_perfs_own_sweep_files_are_not_read_as_model_analyzers() -> None:
    for name in ("tune.yaml", "tune-refine.yaml"):
        assert not ma_config.is_profile(yaml.safe_load((ROOT / "bench" / name).read_text()))
    assert ma_config.is_profile(yaml.safe_load(EXAMPLE.read_text()))


def test_the_file_becomes_perfs_options_and_the_command_line_wins() -> None:
    ns, pairs = options(["--file", str(EXAMPLE), "--concurrency", "8", "--slo-p99-ms", "30"])
    assert ns.model == "classifier" and ns.concurrency == [8] and ns.slo_p99_ms == 30
    assert Path(ns.repo) == REPO
    assert dict(pairs)["classifier.max_batch_size"] == [8, 16]
    assert ns.ma_warnings[0].startswith("read as: perf sweep --model classifier --repo model_repo --param")


def test_cli_dry_run_prints_the_plan_and_what_is_not_honoured() -> None:
    perf = Path(sys.executable).with_name("perf")
    out = subprocess.run([str(perf), "sweep", "--file", "bench/ma_grid.yaml", "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "Sweep of classifier" in text
    assert "5 points, concurrency 1 2 4" in text
    assert "not honoured: export_path" in text
    assert "triton_launch_mode local" in text
    assert "read as: perf sweep --model classifier" in text


def test_the_readme_shows_the_example_as_it_is() -> None:
    section = (ROOT / "README.md").read_text().split("## Coming from Model Analyzer")[1]
    shown = section.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(shown) == yaml.safe_load(EXAMPLE.read_text())


def test_a_bls_models_callees_and_its_input_data_are_read() -> None:
    """bls_composing_models are the models a BLS model calls: loaded with it (--load), and
    perf_analyzer's --input-data is the sweep's own: the corpus's BLS model sweeps as written."""
    corpus = open_repository(ROOT / "tests" / "corpus")
    text = f"""
profile_models:
  bls:
    model_config_parameters:
      instance_group: [{{count: [1, 2], kind: KIND_CPU}}]
bls_composing_models: add_sub
perf_analyzer_flags:
  input-data: {ROOT / "tests" / "corpus" / "bls" / "inputs.json"}
concurrency: [1, 2]
"""
    t = translate(text, repository=corpus)
    assert t.options["load"] == ["add_sub"]
    assert t.options["input_data"].endswith("bls/inputs.json")
    assert not any("bls_composing_models" in w for w in t.warnings), t.warnings
    built = plan.build(t.model, list(t.params), corpus, 0, 2, calls=tuple(t.options["load"]))
    assert built.models == ["bls", "add_sub"] and built.calls == ("add_sub",)
