"""A corpus of model configs as users write them (tests/configs: comments everywhere, fields on
one line or many, lists, repeated fields written out), read through Triton's schema, opened
as a repository, and edited the way `perf apply` edits them: only the changed values' text is
rewritten, every comment and every other line stays. Pure: no server.

``CORPUS`` lists the corpus files, for tests of other features to run over them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format

from perf import modelconfig, params
from perf.modelconfig import KIND_CPU, KIND_GPU, ModelConfig, edit_text, format_config, read_config
from perf.plan import composing_models, is_ensemble
from perf.repository import open_repository

CONFIGS = Path(__file__).parent / "configs"
CORPUS: list[Path] = sorted(CONFIGS.glob("*/config.pbtxt"))
# A string (skipped) or a comment (group 1): the comments of a config.pbtxt, in order.
_COMMENT = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|(#[^\n]*)""")


def corpus_config(model: str) -> ModelConfig:
    return read_config(CONFIGS / model / "config.pbtxt")


def comments(text: str) -> list[str]:
    return [m.group(1) for m in _COMMENT.finditer(text) if m.group(1)]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.parent.name)
def test_every_corpus_config_parses_and_names_its_folder(path: Path) -> None:
    config = read_config(path)
    assert config.name == path.parent.name
    assert comments(path.read_text()), "the corpus is of commented configs"


def test_the_corpus_is_a_repository_with_every_model_its_ensemble_calls() -> None:
    repo = open_repository(CONFIGS)
    assert repo.names == sorted(p.parent.name for p in CORPUS)
    ensembles = [c for c in repo.configs.values() if is_ensemble(c)]
    assert ensembles
    for ensemble in ensembles:
        repo.require(composing_models(ensemble))


def test_the_corpus_holds_what_users_write() -> None:
    """What the corpus is for: each of these is in some config (so it cannot be lost by accident)."""
    direct, oldest = corpus_config("session_direct"), corpus_config("session_oldest")
    assert direct.sequence_batching.HasField("direct") and direct.sequence_batching.max_sequence_idle_microseconds
    kinds = {c.kind for ci in direct.sequence_batching.control_input for c in ci.control}
    assert len(kinds) == 4, "START, READY, END and CORRID controls"
    strategy = oldest.sequence_batching.oldest
    assert strategy.max_candidate_sequences and strategy.preferred_batch_size and strategy.max_queue_delay_microseconds
    (state,) = oldest.sequence_batching.state
    assert state.input_name and state.output_name and state.dims and state.initial_state[0].zero_data

    detector = corpus_config("detector")
    gpu, cpu = detector.instance_group
    assert (gpu.name, gpu.kind, list(gpu.gpus), cpu.name, cpu.kind) == ("gpu_pool", KIND_GPU, [0], "cpu_pool", KIND_CPU)
    assert all(g.rate_limiter.resources and g.rate_limiter.priority for g in (gpu, cpu))
    accelerators = detector.optimization.execution_accelerators
    assert accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    assert accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "FP16"
    assert accelerators.cpu_execution_accelerator[0].name == "openvino"
    assert detector.optimization.graph.level == 1

    embedder = corpus_config("embedder")
    assert embedder.optimization.cuda.graphs and embedder.response_cache.enable
    warmup = [i for w in embedder.model_warmup for i in w.inputs.values()]
    assert any(i.zero_data for i in warmup) and any(i.random_data for i in warmup)

    streamer = corpus_config("streamer")
    assert streamer.model_transaction_policy.decoupled
    assert any(i.optional for i in streamer.input) and any(i.HasField("reshape") for i in streamer.input)
    assert "EXECUTION_ENV_PATH" in corpus_config("tokenizer").parameters

    ranker = corpus_config("ranker")
    assert ranker.dynamic_batching.preferred_batch_size and ranker.dynamic_batching.max_queue_delay_microseconds

    steps = corpus_config("search_pipeline").ensemble_scheduling.step
    readers: dict[str, int] = {}
    for step in steps:
        for tensor in step.input_map.values():
            readers[tensor] = readers.get(tensor, 0) + 1
    assert len(steps) >= 3 and max(readers.values()) >= 2, "one step's output feeds two steps"


# (model, {setting: value}): settings as `perf sweep` and `perf apply` name them.
EDITS: list[tuple[str, dict[str, Any]]] = [
    ("detector", {"instance_group[1].count": 3, "dynamic_batching.max_queue_delay_microseconds": 500}),
    ("detector", {"instance_group[gpu_pool].rate_limiter.priority": 3, "optimization.graph.level": 2}),
    ("embedder", {"optimization.cuda.graphs": False, "model_warmup[1].batch_size": 16}),
    ("embedder", {"response_cache.enable": False, "preferred_batch_size": [8]}),
    ("ranker", {"max_batch_size": 32, "max_queue_delay_microseconds": 0}),
    ("search_pipeline", {"max_batch_size": 8, "ensemble_scheduling.step[2].model_version": 2}),
    ("session_direct", {"sequence_batching.max_sequence_idle_microseconds": 1000000, "instance_count": 1}),
    (
        "session_oldest",
        {"sequence_batching.oldest.max_queue_delay_microseconds": 500, "preferred_batch_size": [2, 4, 8]},
    ),
    ("session_oldest", {"sequence_batching.oldest.max_candidate_sequences": 32}),
    ("streamer", {"instance_count": 2, "parameters.model_id": "tiny-llm-3b"}),
    ("tokenizer", {"parameters.max_length": "256", "instance_count": 4}),
]


def changed(model: str, settings: dict[str, Any]) -> tuple[str, ModelConfig]:
    """The model's config text, and its config with ``settings`` applied as `perf apply` does."""
    text = (CONFIGS / model / "config.pbtxt").read_text()
    config = corpus_config(model)
    for name, value in settings.items():
        params.apply(config, name, params.coerce(params.path_for(name, config), value))
    return text, config


def differing_lines(before: str, after: str) -> list[tuple[str, str]]:
    """The (old, new) lines that differ, the two texts having as many lines."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new), after
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


@pytest.mark.parametrize(("model", "settings"), EDITS, ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_an_applied_setting_rewrites_its_value_and_nothing_else(model: str, settings: dict[str, Any]) -> None:
    text, config = changed(model, settings)
    assert format_config(config) != format_config(read_config(CONFIGS / model / "config.pbtxt"))
    edited = edit_text(text, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    assert comments(edited) == comments(text)
    # One line per setting changes, the one holding its field; every other line is as it was.
    paths = [params.path_for(name, config) for name in settings]
    fields = {"string_value" if p.startswith("parameters.") else p.split(".")[-1].split("[")[0] for p in paths}
    lines = differing_lines(text, edited)
    assert len(lines) == len(settings), lines
    for old, new in lines:
        assert any(re.search(rf"\b{f}\b", old) for f in fields), (old, fields)
        assert comments(old) == comments(new)


def test_a_field_added_to_a_nested_block_takes_its_indent() -> None:
    text, config = changed("detector", {"dynamic_batching.priority_levels": 2})
    edited = edit_text(text, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    assert edited == text.replace(
        "  max_queue_delay_microseconds: 2000\n}", "  max_queue_delay_microseconds: 2000\n  priority_levels: 2\n}"
    )


def test_a_field_added_to_a_block_on_one_line_stays_on_that_line() -> None:
    text, config = changed("tokenizer", {"dynamic_batching.max_queue_delay_microseconds": 50})
    edited = edit_text(text, config)
    assert edited == text.replace("dynamic_batching { }  #", "dynamic_batching { max_queue_delay_microseconds: 50 }  #")
    text, config = changed("session_direct", {"sequence_batching.direct.max_queue_delay_microseconds": 100})
    assert edit_text(text, config) == text.replace("direct { }", "direct { max_queue_delay_microseconds: 100 }")


def test_a_concatenated_string_becomes_one_string_in_its_place() -> None:
    text, config = changed("tokenizer", {"parameters.EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/env.tar.gz"})
    edited = edit_text(text, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    assert edited == text.replace(
        '"$$TRITON_MODEL_DIRECTORY/"\n                  "envs/tokenizer.tar.gz"',
        '"$$TRITON_MODEL_DIRECTORY/env.tar.gz"',
    )


def test_a_new_map_entry_is_written_as_its_siblings_are() -> None:
    text, config = changed("streamer", {"parameters.max_tokens": "64"})
    edited = edit_text(text, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    sibling = 'parameters: { key: "model_id", value: { string_value: "tiny-llm-1b" } }\n'
    assert edited == text.replace(sibling, sibling + 'parameters { key: "max_tokens" value { string_value: "64" } }\n')
    # Inside a [ list ] of entries, the entry joins the list.
    text = (CONFIGS / "embedder" / "config.pbtxt").read_text()
    config = corpus_config("embedder")
    config.model_warmup[1].inputs["token_type_ids"].data_type = config.model_warmup[1].inputs["input_ids"].data_type
    edited = edit_text(text, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    last = '{ key: "attention_mask" value { data_type: TYPE_INT64 dims: [ 128 ] random_data: true } }\n'
    assert edited == text.replace(
        last, last[:-1] + ',\n      { key: "token_type_ids" value { data_type: TYPE_INT64 } }\n'
    )


def test_a_oneof_switch_rewrites_the_one_line() -> None:
    text = (CONFIGS / "embedder" / "config.pbtxt").read_text()
    config = corpus_config("embedder")
    config.model_warmup[0].inputs["input_ids"].random_data = True  # was zero_data
    edited = edit_text(text, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    assert [(a.strip(), b.strip()) for a, b in differing_lines(text, edited)] == [
        ("zero_data: true", "random_data: true")
    ]


def test_removing_an_element_keeps_the_others_and_their_comments() -> None:
    text = (CONFIGS / "detector" / "config.pbtxt").read_text()
    config = corpus_config("detector")
    del config.instance_group[1]
    edited = edit_text(text, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    start = text.index('},\n  {\n    name: "cpu_pool"') + 1
    assert edited == text[:start] + text[text.index("\n]\n\ndynamic_batching") :]
    # The first of three ensemble steps goes; the fan-out's comment stays with its step.
    text = (CONFIGS / "search_pipeline" / "config.pbtxt").read_text()
    config = corpus_config("search_pipeline")
    del config.ensemble_scheduling.step[0]
    edited = edit_text(text, config)
    assert text_format.Parse(edited, ModelConfig()) == config
    start, end = text.index('{\n      model_name: "tokenizer"'), text.index("{\n      # the tokens fan out")
    assert edited == text[:start] + text[end:]


def test_a_failed_edit_falls_back_to_the_whole_config_after_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    text, config = changed("ranker", {"max_batch_size": 32})

    def wrong(text: str, block, old, new, edits: list) -> None:
        edits.append((0, 0, "max_batch_size: 1\n"))

    monkeypatch.setattr(modelconfig, "_edit_block", wrong)
    header = "".join(text.splitlines(keepends=True)[:2])  # the file's two comment lines
    assert edit_text(text, config) == header + format_config(config)
