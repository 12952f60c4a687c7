"""Sweep planning and parameters as pure functions: no server."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from google.protobuf import text_format

from perf import apply, params, plan, space
from perf.modelconfig import ModelConfig, ModelInstanceGroup, read_config
from perf.plots import point_labels
from perf.repository import Repository, open_repository
from perf.results import Run, RunError, RunFolder
from perf.sweep_command import load_spec, options

from .conftest import REPO

repo = open_repository(REPO)


def build(model: str, *pairs: tuple[str, list | None], gpus: int = 0, cores: int = 2) -> plan.Plan:
    return plan.build(model, list(pairs), repo, gpus, cores)


def problems(model: str, *pairs: tuple[str, list | None], gpus: int = 0) -> str:
    with pytest.raises(plan.PlanError) as error:
        build(model, *pairs, gpus=gpus)
    return str(error.value)


def test_grid_of_two_params_on_composing_models() -> None:
    p = build("ensemble_model", ("classifier.preferred_batch_size", ["[8]", "[8,16]", "[16,32]"]),
              ("classifier.instance_count", ["1", "2"]))  # fmt: skip
    assert len(p.points) == 6
    assert p.models == ["ensemble_model", "preprocessor", "classifier"]
    assert p.points[1].values == {"classifier.preferred_batch_size": [8], "classifier.instance_count": 2}
    config = p.points[1].configs["classifier"]
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.instance_group[0].count == 2
    assert len({pt.id for pt in p.points}) == 6


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("instance_count", 3, 3),
        ("kind", "KIND_CPU", "KIND_CPU"),
        ("max_batch_size", 16, 16),
        ("preferred_batch_size", [4, 8], [4, 8]),
        ("max_queue_delay_microseconds", 500, 500),
        ("preserve_ordering", True, True),
        ("response_cache", True, True),
        ("parameters.torch_num_threads", 2, "2"),
        ("dynamic_batching.default_priority_level", 1, 1),
        ("instance_group[0].count", 4, 4),
    ],
)
def test_short_names_and_dotted_paths_set_the_config(name: str, value: object, expected: object) -> None:
    config = read_config(REPO / "classifier" / "config.pbtxt")
    params.apply(config, name, params.coerce(name, value))
    assert params.read(config, name) == expected


def test_a_bare_model_without_dynamic_batching_gets_it() -> None:
    config = read_config(REPO / "classifier" / "config.pbtxt")
    config.ClearField("dynamic_batching")
    params.apply(config, "max_queue_delay_microseconds", 50)
    assert config.HasField("dynamic_batching")


def test_an_ensemble_has_no_batcher_or_instances_to_set() -> None:
    config = read_config(REPO / "ensemble_model" / "config.pbtxt")
    for name in ("max_queue_delay_microseconds", "instance_count"):
        with pytest.raises(params.ParamError, match=r"is an ensemble, with no .* of its own"):
            params.apply(config, name, 1)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("classifier.prefered_batch_size", ["[8]"])], "'prefered_batch_size'; did you mean preferred_batch_size"),
        ([("classifier.dynamic_batching.max_delay", ["1"])], "'max_delay'; did you mean max_queue_delay_microseconds"),
        ([("classifier.instance_count", ["two"])], "classifier.instance_count: expects a whole number, got 'two'"),
        ([("classifier.preserve_ordering", ["3"])], "expects true or false"),
        ([("classifier.kind", ["GPU"])], "expects one of KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL"),
        ([("classifier.preferred_batch_size", ["[128]"])], "preferred_batch_size [128] is above max_batch_size 64"),
        ([("classifier.max_batch_size", ["8"])], "hint: a --param with one value is a fixed setting"),
        ([("classifier.kind", ["KIND_GPU"])], "KIND_GPU or gpus asked for, but this host has no GPU"),
        ([("classifier.gpus", ["[0]"])], "KIND_GPU or gpus asked for, but this host has no GPU"),
        ([("gpus", None)], "gpus: give --values (perf generates values only for instance_count, kind, max_batch_size"),
        ([("classifier.parameters.torch_num_threads", None)], "classifier.parameters.torch_num_threads: give --values"),
        ([("preferred_batch_size", ["[8]"]), ("classifier.preferred_batch_size", ["[8]"])],
         "classifier.preferred_batch_size is given twice (as preferred_batch_size)"),
        ([("resnet.max_batch_size", ["8"])], "unknown field 'resnet'"),
        ([("parameters", ["1"])], "parameters is a map: name its key"),
        ([("classifier.instance_count", ["1"]), ("classifier.instance_count", ["2"])], "given twice"),
        ([], "nothing to sweep"),
    ],
)  # fmt: skip
def test_bad_plans_are_refused_with_the_reason(pairs: list, message: str) -> None:
    assert message in problems("ensemble_model", *pairs)


def test_every_problem_is_reported_at_once() -> None:
    text = problems("ensemble_model", ("classifier.instance_count", ["x"]), ("classifier.kind", ["GPU"]))
    assert "expects a whole number" in text and "expects one of" in text


def test_gpu_settings_are_accepted_where_gpus_exist() -> None:
    p = build("classifier", ("kind", ["KIND_GPU"]), ("gpus", ["[0]", "[0, 1]"]), gpus=2)
    assert [params.read(pt.configs["classifier"], "gpus") for pt in p.points] == [[0], [0, 1]]
    assert "gpus [2] do not exist" in problems("classifier", ("gpus", ["[2]"]), gpus=2)


def test_an_unknown_model_lists_the_choices() -> None:
    with pytest.raises(Exception, match="it has: classifier, ensemble_model, preprocessor"):
        build("resnet", ("max_batch_size", ["8"]))


def test_a_lowered_composing_batch_limit_lowers_the_ensemble_too() -> None:
    p = build("ensemble_model", ("classifier.max_batch_size", ["8"]), ("classifier.preferred_batch_size", ["[]"]))
    (point,) = p.points
    assert point.configs["ensemble_model"].max_batch_size == 8
    assert "lowered to 8" in point.notes[0]
    assert p.changed_models == ["classifier", "ensemble_model"]  # composing models load first


def test_the_baseline_is_a_point_or_marks_the_equal_one() -> None:
    p = plan.with_baseline(build("ensemble_model", ("classifier.instance_count", ["1", "3"])))
    assert (p.points[0].values, p.points[0].baseline) == ({"classifier.instance_count": 2}, True)
    assert p.points[0].configs == {}
    same = plan.with_baseline(build("ensemble_model", ("classifier.instance_count", ["1", "2"])))
    assert [pt.baseline for pt in same.points] == [False, True]


def test_point_ids_do_not_depend_on_order() -> None:
    assert plan.point_id({"a": 1, "b": [2]}) == plan.point_id({"b": [2], "a": 1})


def test_dry_run_diff_shows_only_what_changes() -> None:
    p = build("ensemble_model", ("classifier.instance_count", ["1"]))
    diff = plan.config_diff(p.baseline["classifier"], p.points[0].configs["classifier"], "classifier")
    assert "-  count: 2" in diff and "+  count: 1" in diff
    assert "preferred_batch_size" not in diff


def test_param_arguments_in_pairs() -> None:
    args = ["--param", "a", "--values", "1", "[2, 3]", "--param", "b.c", "--values", "true", "--param", "d"]
    assert plan.parse_param_args(args) == [("a", ["1", "[2, 3]"]), ("b.c", ["true"]), ("d", None)]
    assert plan.parse_param_args(["--param", "a", "--param", "b"]) == [("a", None), ("b", None)]
    with pytest.raises(plan.PlanError, match="needs --values"):
        plan.parse_param_args(["--param", "a", "1"])
    with pytest.raises(plan.PlanError, match="needs at least one value"):
        plan.parse_param_args(["--param", "a", "--values"])


def test_command_line_and_sweep_file(tmp_path: Path) -> None:
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "model: ensemble_model\nconcurrency: [1, 2]\nrepeats: 3\n"
        "params:\n  classifier.instance_count: [1, 2]\n  classifier.preferred_batch_size: [[8], [8, 16]]\n"
    )
    ns, pairs = options(["--file", str(sweep_file), "--param", "classifier.instance_count", "--values", "3",
                         "--repeats", "2"])  # fmt: skip
    assert ns.model == "ensemble_model" and ns.repeats == 2 and ns.concurrency == [1, 2]
    assert pairs == [("classifier.instance_count", ["3"]), ("classifier.preferred_batch_size", [[8], [8, 16]])]
    assert load_spec(ns).levels == (1, 2)
    toml = tmp_path / "sweep.toml"
    toml.write_text('model = "classifier"\nrequest_rate = [50.0]\n[params]\ninstance_count = [1, 2]\n')
    ns, pairs = options(["--file", str(toml)])
    assert load_spec(ns).kind == "request_rate" and pairs == [("instance_count", [1, 2])]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\nconcurency: [1]\n")
    with pytest.raises(plan.PlanError, match=r"unknown keys \['concurency'\]"):
        options(["--file", str(bad)])


def test_load_levels_are_checked() -> None:
    ns, _ = options(["--model", "m", "--concurrency", "0", "2", "--repeats", "0"])
    with pytest.raises(plan.PlanError, match="load level 0 must be above 0"):
        load_spec(ns)


def test_a_run_folder_with_another_plan_is_not_overwritten(tmp_path: Path) -> None:
    RunFolder.open(tmp_path / "run", {"model": "a"}, ["point_id", "load_level", "repeat", "status"])
    with pytest.raises(RunError, match="different plan"):
        RunFolder.open(tmp_path / "run", {"model": "b"}, ["point_id", "load_level", "repeat", "status"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty and holds no sweep"):
        RunFolder.open(tmp_path / "other", {"model": "a"}, ["point_id"])


def test_a_row_cut_short_by_a_kill_is_not_read(tmp_path: Path) -> None:
    folder = RunFolder.open(tmp_path / "run", {"model": "a"}, ["point_id", "load_level", "repeat", "status"])
    folder.append({"point_id": "p1", "load_level": "1", "repeat": 0, "status": "ok"})
    with (folder.path / "results.csv").open("a") as f:
        f.write("p1,2,0,o")  # a write interrupted mid-line
    assert set(folder.rows_by_key()) == {("p1", "1", 0)}


def test_consecutive_points_differ_in_one_setting_and_counts_change_fastest() -> None:
    p = build("classifier", ("instance_count", ["1", "2"]), ("max_batch_size", ["8", "16", "32"]),
              ("preferred_batch_size", ["[]"]))  # fmt: skip
    values = [
        tuple(pt.values[c] for c in ("classifier.instance_count", "classifier.max_batch_size")) for pt in p.points
    ]
    assert sorted(values) == sorted((c, m) for c in (1, 2) for m in (8, 16, 32))
    assert all(sum(a != b for a, b in zip(x, y, strict=True)) == 1 for x, y in itertools.pairwise(values))
    assert values[:3] == [(1, 8), (2, 8), (2, 16)]


def config(text: str) -> ModelConfig:
    return text_format.Parse(text, ModelConfig())


def ensemble(name: str, *steps: str) -> ModelConfig:
    step = " ".join(f'step {{ model_name: "{m}" model_version: -1 }}' for m in steps)
    return config(f'name: "{name}" platform: "ensemble" max_batch_size: 8 ensemble_scheduling {{ {step} }}')


def test_the_default_model_is_the_one_no_ensemble_calls(tmp_path: Path) -> None:
    assert plan.default_model(repo) == "ensemble_model"
    ns, pairs = options(["--param", "preferred_batch_size", "--dry-run"])
    assert (ns.model, ns.dry_run, pairs) == ("ensemble_model", True, [("preferred_batch_size", None)])
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("params:\n  preferred_batch_size: null\n  classifier.instance_count: 2\n")
    _, pairs = options(["--file", str(sweep_file)])
    assert pairs == [("preferred_batch_size", None), ("classifier.instance_count", [2])]


def test_several_top_level_models_must_be_named() -> None:
    configs = {**repo.configs, "other": config('name: "other" backend: "python"')}
    with pytest.raises(plan.PlanError, match=r"several top-level models \(ensemble_model, other\): pass --model"):
        plan.default_model(Repository(repo.path, configs))


@pytest.mark.parametrize(
    ("name", "gpus", "cores", "expected"),
    [
        ("preferred_batch_size", 0, 2, [[], [2], [4], [8], [16], [32], [64]]),
        ("instance_count", 0, 2, [1, 2]),
        ("instance_count", 0, 1, [1, 2]),
        ("instance_count", 0, 8, [1, 2, 4, 8]),
        ("instance_count", 1, 16, [1, 2, 4]),  # the classifier is KIND_GPU: 4 per GPU
        ("instance_count", 2, 16, [1, 2, 4]),  # a GPU group's count is per GPU: still 4
        ("max_queue_delay_microseconds", 0, 2, [0, 100, 300, 1000, 3000, 10000]),
        ("max_batch_size", 0, 2, [64]),  # no smaller limit fits the preferred sizes [..., 64]
        ("preserve_ordering", 0, 2, [False, True]),
        ("response_cache", 0, 2, [False, True]),
        ("kind", 0, 2, ["KIND_CPU"]),
        ("kind", 1, 2, ["KIND_CPU", "KIND_GPU"]),
    ],
)
def test_values_are_generated_from_the_configs_and_the_host(name: str, gpus: int, cores: int, expected: list) -> None:
    (param,) = build("ensemble_model", (name, None), gpus=gpus, cores=cores).params
    assert (param.column, param.targets, list(param.values)) == (name, ("preprocessor", "classifier"), expected)


def test_generated_batch_sizes_fit_each_model() -> None:
    model = config('name: "m" max_batch_size: 48 dynamic_batching { preferred_batch_size: [4] }')
    assert space.generate("max_batch_size", [model], 0, 2) == [4, 8, 16, 32, 48]
    assert space.generate("preferred_batch_size", [model], 0, 2) == [[], [2], [4], [8], [16], [32], [48]]
    assert space.generate("instance_group.count", [model], 0, 2) == [1, 2]
    # No instance group: Triton's default one (KIND_AUTO) runs on the GPUs where there are some.
    assert space.generate("instance_group.count", [model], 2, 16) == [1, 2, 4]
    with pytest.raises(params.ParamError, match="m has max_batch_size 0"):
        space.generate("max_batch_size", [config('name: "m" max_batch_size: 0')], 0, 2)


@pytest.mark.parametrize("kind", [("kind", None), ("classifier.kind", ["KIND_CPU", "KIND_GPU"])])
def test_counts_swept_beside_kinds_reach_each_kinds_own_limit(kind: tuple[str, list[str] | None]) -> None:
    """On one GPU and 16 cores: a CPU group's count is instances in all, up to one a core; a
    GPU group's is instances on each GPU, up to four. Generated once for both kinds, the
    counts reach 16, and the GPU points stop at 4."""
    name = "classifier.instance_count" if kind[0].startswith("classifier.") else "instance_count"
    p = build("classifier", kind, (name.removeprefix("classifier."), None), gpus=1, cores=16)
    counts: dict[str, set[int]] = {}
    for point in p.points:
        (group,) = point.configs["classifier"].instance_group
        counts.setdefault(ModelInstanceGroup.Kind.Name(group.kind), set()).add(group.count)
    assert counts == {"KIND_CPU": {1, 2, 4, 8, 16}, "KIND_GPU": {1, 2, 4}}


def test_given_counts_beside_kinds_are_all_tried() -> None:
    p = build("classifier", ("kind", None), ("instance_count", ["1", "8"]), gpus=1, cores=16)
    assert sorted((pt.values["classifier.kind"], pt.values["classifier.instance_count"]) for pt in p.points) == [
        ("KIND_CPU", 1), ("KIND_CPU", 8), ("KIND_GPU", 1), ("KIND_GPU", 8),
    ]  # fmt: skip


def test_a_tied_setting_sets_every_composing_model_that_has_it() -> None:
    p = build("ensemble_model", ("preferred_batch_size", ["[8]", "[16]"]), ("classifier.instance_count", ["1"]))
    tied = p.params[0]
    assert (tied.model, tied.column) == ("ensemble_model", "preferred_batch_size")
    assert tied.models == tied.targets == ("preprocessor", "classifier")
    assert p.points[0].values == {"preferred_batch_size": [8], "classifier.instance_count": 1}
    configs = p.points[0].configs
    assert [params.read(configs[m], "preferred_batch_size") for m in ("preprocessor", "classifier")] == [[8], [8]]
    assert configs["classifier"].instance_group[0].count == 1
    assert p.params[1].column == "classifier.instance_count" and p.params[1].models == ("classifier",)


def test_the_baseline_of_a_tied_setting_is_one_value_or_each_models() -> None:
    counts = plan.with_baseline(build("ensemble_model", ("instance_count", ["1", "2"])))
    assert counts.points[0].values == {"instance_count": {"preprocessor": 1, "classifier": 2}}
    assert [pt.baseline for pt in counts.points] == [True, False, False]
    delays = plan.with_baseline(build("ensemble_model", ("max_queue_delay_microseconds", ["0", "100"])))
    assert [pt.values["max_queue_delay_microseconds"] for pt in delays.points] == [0, 100]
    assert [pt.baseline for pt in delays.points] == [False, True]


def test_a_tied_column_is_labelled_by_its_bare_name() -> None:
    summary = pd.DataFrame({"is_baseline": [False, False], "preferred_batch_size": ["[2]", "[4]"],
                            "classifier.instance_count": [1, 2]})  # fmt: skip
    labels = point_labels(summary, ["preferred_batch_size", "classifier.instance_count"])
    assert labels.tolist() == [
        "preferred_batch_size=[2], classifier.instance_count=1",
        "preferred_batch_size=[4], classifier.instance_count=2",
    ]


def test_a_tied_setting_no_composing_model_has_is_refused() -> None:
    configs = {
        "pipeline": ensemble("pipeline", "a", "b"),
        "a": config('name: "a" max_batch_size: 8'),
        "b": config('name: "b" max_batch_size: 0'),
    }
    with pytest.raises(plan.PlanError, match=r"none of pipeline's composing models \(a, b\) has this setting"):
        plan.build("pipeline", [("preferred_batch_size", ["[4]"])], Repository(Path("r"), configs), 0, 2)
    (tied,) = plan.build("pipeline", [("max_batch_size", None)], Repository(Path("r"), configs), 0, 2).params
    assert (tied.targets, tied.values) == (("a",), (1, 2, 4, 8))


def test_apply_writes_a_tied_winner_into_every_target(tmp_path: Path) -> None:
    for model in repo.names:
        (tmp_path / model).mkdir()
        shutil.copy(REPO / model / "config.pbtxt", tmp_path / model)
    baseline = '{"preprocessor": [8, 16, 32, 64], "classifier": [32, 64]}'
    table = pd.DataFrame({
        "point_id": ["base", "best"], "preferred_batch_size": [baseline, "[16]"],
        **{f"{m}.requests": [1, 1] for m in ("ensemble_model", "preprocessor", "classifier")},
    })  # fmt: skip
    record = {"model": "ensemble_model", "params": {"preferred_batch_size": [[16]]},
              "targets": {"preferred_batch_size": ["preprocessor", "classifier"]}}  # fmt: skip

    def changes(winner: str) -> list[apply.Change]:
        found = SimpleNamespace(run=Run(tmp_path, table, record, {}), slo_p99_ms=None,
                                recommendation=SimpleNamespace(best=SimpleNamespace(point_id=winner)))  # fmt: skip
        return apply.changes(found, tmp_path)

    written = changes("best")
    assert [c.model for c in written] == ["preprocessor", "classifier"]
    assert all("  preferred_batch_size: [ 16 ]\n  max_queue" in c.after for c in written)
    assert changes("base") == [], "the baseline winning writes nothing"
