"""config.pbtxt through Triton's schema, host adaptation and repository copies (no server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format

from perf.modelconfig import (
    KIND_CPU,
    KIND_GPU,
    ConfigError,
    ModelConfig,
    edit_text,
    for_host,
    format_config,
    from_json,
    read_config,
    to_json,
)
from perf.repository import RepositoryError, emit_libtorch, open_repository, stage

from .conftest import REPO


@pytest.mark.parametrize("model", ["preprocessor", "classifier", "ensemble_model"])
def test_config_round_trip_keeps_every_field(model: str, tmp_path: Path) -> None:
    config = read_config(REPO / model / "config.pbtxt")
    written = tmp_path / "config.pbtxt"
    written.write_text(format_config(config))
    assert read_config(written) == config
    assert from_json(to_json(config)) == config


def test_reference_configs_say_what_the_issue_asks() -> None:
    repo = open_repository(REPO)
    assert repo.names == ["classifier", "ensemble_model", "preprocessor"]
    pre, cls, ens = (repo.configs[n] for n in ("preprocessor", "classifier", "ensemble_model"))
    assert (pre.input[0].name, list(pre.input[0].dims)) == ("RAW_IMAGE", [-1])
    assert pre.input[0].allow_ragged_batch, "JPEGs of different lengths must be able to share a batch"
    assert list(pre.output[0].dims) == [3, 224, 224]
    assert (cls.input[0].name, cls.output[0].name, list(cls.output[0].dims)) == ("input__0", "output__0", [5])
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["preprocessor", "classifier"]
    # An ensemble must batch no more than the models it calls.
    assert ens.max_batch_size <= min(pre.max_batch_size, cls.max_batch_size)
    for config in (pre, cls):
        assert max(config.dynamic_batching.preferred_batch_size) <= config.max_batch_size


def test_gpu_groups_become_cpu_groups_on_a_host_without_gpu() -> None:
    config = read_config(REPO / "classifier" / "config.pbtxt")
    config.instance_group[0].gpus.extend([0, 1])
    assert config.instance_group[0].kind == KIND_GPU
    adapted = for_host(config, gpu_count=0)
    assert adapted.instance_group[0].kind == KIND_CPU
    assert list(adapted.instance_group[0].gpus) == []
    assert adapted.instance_group[0].count == config.instance_group[0].count
    assert config.instance_group[0].kind == KIND_GPU  # the original is not changed


def test_a_gpu_the_host_lacks_is_named() -> None:
    config = read_config(REPO / "classifier" / "config.pbtxt")
    config.instance_group[0].gpus.extend([0, 1])  # the seed's gpus: [0, 1]
    with pytest.raises(ConfigError, match=r"GPU \[1\] but this host has 1"):
        for_host(config, gpu_count=1)


def test_unparsable_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "x"\nmax_batch_size: lots\n')
    with pytest.raises(ConfigError, match=str(path)):
        read_config(path)


def test_model_name_must_equal_its_folder(tmp_path: Path) -> None:
    # The seed's mistake: name "preprocess" in folder preprocessor.
    shutil.copytree(REPO, tmp_path / "repo")
    config = tmp_path / "repo" / "preprocessor" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "preprocessor"', 'name: "preprocess"'))
    with pytest.raises(RepositoryError, match="'preprocess' differs from its folder 'preprocessor'"):
        open_repository(tmp_path / "repo")


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(
        RepositoryError, match=r"'resnet' is not in .* \(it has: classifier, ensemble_model, preprocessor\)"
    ):
        open_repository(REPO).require(["resnet"])


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        open_repository(tmp_path / "nowhere")


def test_staging_adapts_a_copy_and_leaves_the_source_alone(tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in REPO.rglob("config.pbtxt")}
    staged = stage(open_repository(REPO), tmp_path / "staged", gpu_count=0)
    assert staged.configs["classifier"].instance_group[0].kind == KIND_CPU
    assert read_config(tmp_path / "staged" / "classifier" / "config.pbtxt").instance_group[0].kind == KIND_CPU
    assert (tmp_path / "staged" / "classifier" / "1" / "model.pt").is_file()
    assert {p: p.read_bytes() for p in REPO.rglob("config.pbtxt")} == before


def test_emit_libtorch_serves_the_torchscript_file_on_libtorch(tmp_path: Path) -> None:
    emitted = emit_libtorch(open_repository(REPO), tmp_path / "libtorch")
    classifier = read_config(tmp_path / "libtorch" / "classifier" / "config.pbtxt")
    assert (classifier.platform, classifier.backend) == ("pytorch_libtorch", "")
    assert "torch_num_threads" not in classifier.parameters
    assert sorted(p.name for p in (tmp_path / "libtorch" / "classifier" / "1").iterdir()) == [
        "model.pt",
        "model_pixels.pt",
    ]
    assert classifier.default_model_filename == "", "the baseline serves model.pt, libtorch's default"
    # The preprocessor stays on the python backend; the ensemble is untouched.
    assert emitted.configs["preprocessor"].backend == "python"
    assert (tmp_path / "libtorch" / "preprocessor" / "1" / "model.py").is_file()


def test_emit_libtorch_of_the_tuned_profile_serves_its_pixels_model(tmp_path: Path) -> None:
    emit_libtorch(open_repository(REPO, "tuned"), tmp_path / "libtorch")
    classifier = read_config(tmp_path / "libtorch" / "classifier" / "config.pbtxt")
    assert classifier.default_model_filename == "model_pixels.pt" and not classifier.parameters.keys() & {
        "torchscript_file",
        "torch_num_threads",
    }
    assert (
        classifier.input[0].data_type
        == read_config(tmp_path / "libtorch" / "preprocessor" / "config.pbtxt").output[0].data_type
    )


def test_emit_libtorch_converts_the_profiles_beside_the_config(tmp_path: Path) -> None:
    """`tritonserver --model-config-name=tuned` in NVIDIA's container serves the tuned profile
    of the emitted repository: its model.py is gone, so its profile must be libtorch's too."""
    emitted = emit_libtorch(open_repository(REPO), tmp_path / "libtorch")
    tuned = open_repository(emitted.path, "tuned").configs["classifier"]
    assert (tuned.platform, tuned.backend, tuned.default_model_filename) == ("pytorch_libtorch", "", "model_pixels.pt")
    assert tuned == emit_libtorch(open_repository(REPO, "tuned"), tmp_path / "direct").configs["classifier"]
    # The stub's one intra-op thread, set for two shared cores, is kept as libtorch's own.
    for config in (tuned, emitted.configs["classifier"]):
        assert config.parameters["INTRA_OP_THREAD_COUNT"].string_value == "1"
        assert not config.parameters.keys() & {"torchscript_file", "torch_num_threads", "nice"}
    assert open_repository(emitted.path, "tuned").configs["preprocessor"].backend == "python"


def test_emit_refuses_to_write_into_the_source(tmp_path: Path) -> None:
    shutil.copytree(REPO, tmp_path / "repo")
    with pytest.raises(RepositoryError, match="inside the source repository"):
        emit_libtorch(open_repository(tmp_path / "repo"), tmp_path / "repo" / "out")


SMALL = """# what this model is for
name: "m"  # the name
max_batch_size: 8
input [ { name: "x", data_type: TYPE_FP32, dims: [ 3 ] } ]
# batching: tuned by hand
dynamic_batching { preferred_batch_size: [ 4, 8 ] }
parameters { key: "k" value { string_value: "v" } }
"""


def test_an_edit_rewrites_only_the_settings_that_change() -> None:
    config = text_format.Parse(SMALL, ModelConfig())
    config.dynamic_batching.preferred_batch_size[:] = [2]
    edited = edit_text(SMALL, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    unchanged = [line for line in SMALL.splitlines() if "dynamic_batching" not in line]
    assert [line for line in edited.splitlines() if line in unchanged] == unchanged, edited


def test_an_edit_adds_and_removes_whole_settings() -> None:
    config = text_format.Parse(SMALL, ModelConfig())
    config.ClearField("dynamic_batching")
    config.instance_group.add(count=2)
    edited = edit_text(SMALL, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    assert "dynamic_batching" not in edited and "# batching: tuned by hand" in edited
    assert edited.startswith('# what this model is for\nname: "m"  # the name\n')


# Valid layouts users rarely write: separators, angle brackets, a repeated scalar written
# field by field, two occurrences of a repeated message on one line, a map as a [ list ].
ODD = """# odd but valid
name: 'odd';  max_batch_size: 4,
input < name: "x" data_type: TYPE_FP32 dims: -1 dims: 3 >
instance_group { count: 1 } instance_group { count: 2; kind: KIND_CPU }
dynamic_batching {preferred_batch_size: 2 preferred_batch_size: 4
  max_queue_delay_microseconds: 7}
parameters [{key: "a", value: {string_value: "1"}}, {key: "b", value: {string_value: "2"}}]
"""


@pytest.mark.parametrize(
    ("change", "old", "new"),
    [
        (lambda c: setattr(c, "max_batch_size", 8), "max_batch_size: 4,", "max_batch_size: 8,"),
        (lambda c: c.input[0].dims.__setitem__(0, 5), "dims: -1 dims: 3", "dims: 5 dims: 3"),
        (lambda c: setattr(c.instance_group[1], "count", 5), "count: 2;", "count: 5;"),
        (lambda c: c.dynamic_batching.preferred_batch_size.append(8),
         "preferred_batch_size: 2 preferred_batch_size: 4", "preferred_batch_size: [ 2, 4, 8 ]"),
        (lambda c: setattr(c.dynamic_batching, "preserve_ordering", True), "7}", "7 preserve_ordering: true}"),
        (lambda c: c.parameters.__delitem__("a"), '{key: "a", value: {string_value: "1"}}, ', ""),
        (lambda c: c.instance_group.__delitem__(0), "instance_group { count: 1 } ", ""),
        (lambda c: c.ClearField("dynamic_batching"),
         "dynamic_batching {preferred_batch_size: 2 preferred_batch_size: 4\n  max_queue_delay_microseconds: 7}\n", ""),
    ],
    ids=["scalar", "list-element", "separator", "list-grows", "inline-add", "map-entry", "element", "block"],
)  # fmt: skip
def test_odd_layouts_are_edited_in_place(change, old: str, new: str) -> None:
    config = text_format.Parse(ODD, ModelConfig())
    change(config)
    edited = edit_text(ODD, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    assert edited == ODD.replace(old, new, 1)


def repo_with_profile(tmp_path: Path) -> Path:
    """A copy of the reference repository where only the classifier has a "fast" profile."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("model.pt"))
    (repo / "classifier" / "configs").mkdir(exist_ok=True)
    fast = (REPO / "classifier" / "config.pbtxt").read_text().replace("count: 2", "count: 1")
    (repo / "classifier" / "configs" / "fast.pbtxt").write_text(fast)
    return repo


def test_a_profile_is_each_models_configs_file_where_it_has_one(tmp_path: Path) -> None:
    repo = repo_with_profile(tmp_path)
    profiled = open_repository(repo, "fast")
    assert profiled.configs["classifier"].instance_group[0].count == 1
    assert profiled.configs["preprocessor"] == open_repository(repo).configs["preprocessor"]
    staged = stage(profiled, tmp_path / "staged", gpu_count=0)
    assert read_config(tmp_path / "staged" / "classifier" / "config.pbtxt").instance_group[0].count == 1
    emit_libtorch(profiled, tmp_path / "libtorch")
    assert read_config(tmp_path / "libtorch" / "classifier" / "config.pbtxt").instance_group[0].count == 1
    assert staged.configs["classifier"].instance_group[0].kind == KIND_CPU


def test_an_unknown_profile_names_the_ones_there(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match=r"no model .* has a profile 'tunde'.*profiles there: fast"):
        open_repository(repo_with_profile(tmp_path), "tunde")
