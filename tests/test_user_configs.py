"""Configs as users write them: short names resolved against the model's own scheduler and
instance groups, changes nobody named refused, values Triton cannot mean refused, and what a
host cannot run said. Pure: plans only, no server."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from perf import params, plan
from perf.drivers.perf_analyzer import input_problems, model_args
from perf.modelconfig import ModelConfig
from perf.repository import Repository, open_repository
from perf.sweep import LoadSpec, load_problems

from .test_config_corpus import CONFIGS

IO = """
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
OLDEST = """
name: "oldest" backend: "onnxruntime" max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 100 }
  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] } ]
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
}
"""
DIRECT = """
name: "direct" backend: "onnxruntime" max_batch_size: 8
sequence_batching {
  control_input [ { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] } ]
}
"""
GROUPS = """
name: "groups" backend: "onnxruntime" max_batch_size: 8
instance_group [
  { name: "gpu_pool" kind: KIND_GPU count: 2 gpus: [ 0 ] },
  { name: "cpu_pool" kind: KIND_CPU count: 1 rate_limiter { resources [ { name: "R1" count: 2 } ] priority: 2 } }
]
dynamic_batching { max_queue_delay_microseconds: 100 }
response_cache { enable: true }
"""
PLAIN = """
name: "plain" backend: "tensorrt" max_batch_size: 0
instance_group [ { kind: KIND_GPU count: 1 } ]
"""


def repository(*texts: str) -> Repository:
    configs = {}
    for text in texts:
        config = text_format.Parse(text + IO, ModelConfig())
        configs[config.name] = config
    return Repository(Path("users-repo"), configs)


REPO = repository(OLDEST, DIRECT, GROUPS, PLAIN)


def build(model: str, *pairs: tuple[str, list | None], gpus: int = 0, **options) -> plan.Plan:
    return plan.build(model, list(pairs), REPO, gpus, 2, **options)


def refused(model: str, *pairs: tuple[str, list | None], gpus: int = 0) -> str:
    with pytest.raises(plan.PlanError) as error:
        build(model, *pairs, gpus=gpus)
    return " ".join(str(error.value).split())


def test_batcher_names_mean_the_sequence_batchers_strategy() -> None:
    swept = build("oldest", ("max_queue_delay_microseconds", ["0", "500"]), ("preferred_batch_size", ["[8]"]))
    for point in swept.points:
        config = point.configs["oldest"]
        assert config.WhichOneof("scheduling_choice") == "sequence_batching", "the sequence batcher is kept"
        assert list(config.sequence_batching.oldest.preferred_batch_size) == [8]
        assert config.sequence_batching.oldest.max_candidate_sequences == 4
        assert len(config.sequence_batching.control_input) == 1 and len(config.sequence_batching.state) == 1
    delays = [p.configs["oldest"].sequence_batching.oldest.max_queue_delay_microseconds for p in swept.points]
    assert delays == [0, 500]


def test_a_setting_the_strategy_lacks_names_those_it_has() -> None:
    text = refused("direct", ("preferred_batch_size", ["[4]"]))
    assert "Direct strategy, which has no preferred_batch_size" in text
    assert "sequence_batching.direct.max_queue_delay_microseconds" in text
    # The Direct strategy's own delay is there to sweep (Triton's default strategy when none is written).
    (point,) = build("direct", ("max_queue_delay_microseconds", ["10"])).points
    assert point.configs["direct"].sequence_batching.direct.max_queue_delay_microseconds == 10


def test_a_path_into_the_other_scheduler_is_refused_with_what_it_would_drop() -> None:
    text = refused("oldest", ("dynamic_batching.max_queue_delay_microseconds", ["0", "500"]))
    assert "would also change" in text
    for lost in ("sequence_batching.oldest.max_candidate_sequences", "sequence_batching.control_input[0].name"):
        assert lost in text
    assert "one choice in Triton's ModelConfig" in text


def test_a_whole_block_set_from_a_value_is_what_the_user_named() -> None:
    (point,) = build("groups", ("dynamic_batching", ['{"max_queue_delay_microseconds": 5}'])).points
    assert point.configs["groups"].dynamic_batching.max_queue_delay_microseconds == 5


def test_several_instance_groups_need_one_named() -> None:
    text = refused("groups", ("instance_count", ["1", "2"]))
    assert "groups has 2 instance groups: name one" in text
    for choice in ("instance_group[0].count", "instance_group[gpu_pool].count", "instance_group[cpu_pool].count"):
        assert choice in text
    swept = build("groups", ("instance_group[cpu_pool].count", ["1", "3"]), gpus=1)
    for point, count in zip(swept.points, [1, 3], strict=True):
        gpu, cpu = point.configs["groups"].instance_group
        assert (gpu.count, cpu.count) == (2, count), "only the named group changes"
        assert cpu.rate_limiter.priority == 2 and list(gpu.gpus) == [0]
    assert swept.params[0].column == "groups.instance_group[cpu_pool].count"
    assert "no instance group named 'cpu'" in refused("groups", ("instance_group[cpu].count", ["2"]))


def test_values_triton_cannot_mean_are_all_refused_at_once() -> None:
    text = refused("oldest", ("max_queue_delay_microseconds", ["-5", "10"]), ("preferred_batch_size", ["[0]", "[16]"]),
                   ("max_batch_size", ["-1", "8"]))  # fmt: skip
    assert "max_queue_delay_microseconds: expects 0 or more" in text and "got -5" in text
    assert "preferred_batch_size: expects 1 or more" in text and "got 0" in text
    assert "max_batch_size: expects 0 or more" in text and "got -1" in text
    assert "preferred_batch_size [16] is above max_batch_size 8" in text
    counts = refused("groups", ("instance_group[1].count", ["-1", "0"]))
    assert counts.count("expects 1 or more (a count below 1 reads as the default, 1 instance)") == 2


def test_devices_a_backend_or_group_cannot_use_are_refused() -> None:
    assert "tensorrt runs on GPUs only" in refused("plain", ("kind", ["KIND_CPU"]), gpus=1)
    gpus_on_cpu = refused("groups", ("instance_group[cpu_pool].gpus", ["[0]"]), gpus=1)
    assert "only KIND_GPU and KIND_AUTO groups take gpus" in gpus_on_cpu
    assert "needs max_batch_size > 0" in refused("oldest", ("max_batch_size", ["0"]))


def test_an_ensemble_has_no_batcher_to_set() -> None:
    ensemble = text_format.Parse(
        """name: "pipe" platform: "ensemble" max_batch_size: 8
        ensemble_scheduling { step [ { model_name: "groups" model_version: -1 input_map { key: "IN" value: "IN" }
                                        output_map { key: "OUT" value: "OUT" } } ] }"""
        + IO,
        ModelConfig(),
    )
    with pytest.raises(params.ParamError, match="pipe is an ensemble, with no batcher of its own"):
        params.path_for("max_queue_delay_microseconds", ensemble)


def test_a_gpu_config_on_a_host_without_gpus_is_said_and_a_response_cache_warned() -> None:
    notes = " ".join(build("groups", ("instance_group[cpu_pool].count", ["1", "2"])).notes)
    assert "instance_group[0] asks for KIND_GPU, but this host has no GPU" in notes
    assert "the numbers measure the cache" in notes and "--no-response-cache" in notes
    on_gpu = build("groups", ("instance_group[cpu_pool].count", ["1", "2"]), gpus=1)
    assert not any("KIND_GPU" in note for note in on_gpu.notes)
    off = build("groups", ("instance_group[cpu_pool].count", ["1", "2"]), response_cache=False)
    assert not any(p.configs["groups"].response_cache.enable for p in off.points)
    assert not off.baseline["groups"].response_cache.enable
    assert "response_cache switched off" in " ".join(off.notes)


def test_what_perf_analyzer_must_be_told_of_a_model() -> None:
    decoupled = text_format.Parse(
        'name: "stream" backend: "python" model_transaction_policy { decoupled: true }'
        'input [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]',
        ModelConfig(),
    )
    assert model_args(decoupled, ("TEXT:16",)) == ["--streaming", "--shape", "TEXT:16"]
    (problem,) = input_problems(decoupled, (), has_data=False)
    assert "input TEXT of stream has dims [-1], of variable size" in problem and "--shape TEXT:8" in problem
    assert input_problems(decoupled, ("TEXT:16",), has_data=False) == []
    assert "stream has no input IMAGE" in " ".join(input_problems(decoupled, ("IMAGE:3",), has_data=False))


def test_the_locust_driver_refuses_models_it_cannot_drive() -> None:
    swept = build("oldest", ("max_queue_delay_microseconds", ["0", "10"]))
    (problem,) = load_problems(swept, LoadSpec(driver="locust"))
    assert "oldest is a sequence model" in problem and "perf_analyzer" in problem
    assert load_problems(swept, LoadSpec()) == [], "perf_analyzer sends sequences itself"


# --- the corpus of hand-written configs (tests/configs) ---------------------------------------

CORPUS_REPO = open_repository(CONFIGS)
SHORT_NAMES = [*params.ALIASES, *params.SCHEDULER_NAMES]
# A legal value of each short name, for the dry runs below.
LEGAL = {"instance_count": 3, "kind": "KIND_GPU", "gpus": [0], "max_batch_size": 128, "preferred_batch_size": [2],
         "max_queue_delay_microseconds": 777, "preserve_ordering": True, "response_cache": False}  # fmt: skip


@pytest.mark.parametrize("model", CORPUS_REPO.names)
@pytest.mark.parametrize("name", sorted(set(SHORT_NAMES)))
def test_every_short_name_resolves_or_is_refused_with_the_choices(model: str, name: str) -> None:
    config = CORPUS_REPO.configs[model]
    try:
        path = params.path_for(name, config)
    except params.ParamError as error:
        message = str(error)
        assert message.startswith(f"{name}: {model} "), message
        assert "instance_group[" in message or "set it on the models it calls" in message or \
            "its settings are sequence_batching." in message, message  # fmt: skip
        return
    params.resolve(path)  # a real field of the schema
    if name in params.SCHEDULER_NAMES and config.HasField("sequence_batching"):
        assert path.startswith("sequence_batching."), "the model's own batcher, not a dynamic one"


def _legal_sweeps() -> list[tuple[str, str]]:
    """(model, short name) pairs the corpus can sweep: the path resolves, and the value fits."""
    pairs = []
    for model in CORPUS_REPO.names:
        config = CORPUS_REPO.configs[model]
        for name in LEGAL:
            try:
                params.path_for(name, config)
            except params.ParamError:
                continue
            batching = name in ("max_batch_size", "preferred_batch_size")
            if (batching and config.max_batch_size == 0) or name == "gpus":
                continue
            pairs.append((model, name))
    return pairs


@pytest.mark.parametrize(("model", "name"), _legal_sweeps())
def test_a_legal_sweep_changes_only_the_named_field(model: str, name: str) -> None:
    """On an ensemble the bare name is tied: each model it reaches changes that field only
    (and the ensemble's max_batch_size follows, said in the point's note)."""
    swept = plan.build(model, [(name, [LEGAL[name]])], CORPUS_REPO, 1, 2)
    (point,) = swept.points
    (param,) = swept.params
    for target in param.models:
        before, after = swept.baseline[target], point.configs[target]
        expected = ModelConfig()
        expected.CopyFrom(before)
        params.apply(expected, name, params.coerce(name, LEGAL[name]))
        assert after == expected, target
    for other, config in point.configs.items():
        if other not in param.models:
            base = swept.baseline[other]
            changed = {f.name for f in base.DESCRIPTOR.fields if getattr(config, f.name) != getattr(base, f.name)}
            assert changed <= ({"max_batch_size"} if point.notes else set()), (other, changed)


def test_any_named_element_can_be_swept_by_its_name() -> None:
    (point,) = build("groups", ("input[IN].dims", ["[8]"])).points
    assert list(point.configs["groups"].input[0].dims) == [8]
    assert "input has no element named 'NOPE' (it has: IN)" in refused("groups", ("input[NOPE].dims", ["[8]"]))
