"""Configs that run alike at a load level: batch settings no batch there can reach."""

from __future__ import annotations

from google.protobuf import text_format

from perf.modelconfig import ModelConfig
from perf.search.alike import behaviour


def model(text: str) -> dict[str, ModelConfig]:
    return {"m": text_format.Parse(f'name: "m" backend: "python" {text}', ModelConfig())}


def alike(a: str, b: str, concurrency: float, rows: int = 1) -> bool:
    return behaviour(model(a), concurrency, rows) == behaviour(model(b), concurrency, rows)


def test_a_max_batch_size_no_batch_reaches_does_not_tell_configs_apart() -> None:
    assert alike("max_batch_size: 8 dynamic_batching {}", "max_batch_size: 16 dynamic_batching {}", 4)
    assert not alike("max_batch_size: 8 dynamic_batching {}", "max_batch_size: 16 dynamic_batching {}", 16)
    # Four requests fill a batch of four: reached, so it sends at once rather than waiting out a delay.
    assert not alike("max_batch_size: 4 dynamic_batching {}", "max_batch_size: 8 dynamic_batching {}", 4)


def test_preferred_sizes_out_of_reach_are_as_none() -> None:
    def batcher(preferred: str) -> str:
        return f"max_batch_size: 64 dynamic_batching {{ {preferred} max_queue_delay_microseconds: 100 }}"

    none, reachable = batcher(""), batcher("preferred_batch_size: [4]")
    unreachable = batcher("preferred_batch_size: [32, 64]")
    assert alike(none, unreachable, 4)
    assert not alike(none, reachable, 4)
    assert not alike(none, unreachable, 32)


def test_rows_per_request_count() -> None:
    a, b = "max_batch_size: 16 dynamic_batching {}", "max_batch_size: 64 dynamic_batching {}"
    assert alike(a, b, 4, rows=2) and not alike(a, b, 4, rows=8)


def test_other_settings_still_tell_configs_apart() -> None:
    one = "max_batch_size: 8 dynamic_batching {} instance_group [ { count: 1 kind: KIND_CPU } ]"
    two = "max_batch_size: 16 dynamic_batching {} instance_group [ { count: 2 kind: KIND_CPU } ]"
    assert not alike(one, two, 4)
    delayed = "max_batch_size: 16 dynamic_batching { max_queue_delay_microseconds: 500 }"
    assert not alike("max_batch_size: 8 dynamic_batching {}", delayed, 4)


def test_a_sequence_batcher_is_never_folded() -> None:
    a = "max_batch_size: 8 sequence_batching {}"
    b = "max_batch_size: 16 sequence_batching {}"
    assert not alike(a, b, 2)


def test_a_model_an_ensemble_calls_twice_holds_twice_the_rows() -> None:
    def pipeline(limit: int) -> dict[str, ModelConfig]:
        ensemble = text_format.Parse(
            'name: "e" platform: "ensemble" max_batch_size: 64 ensemble_scheduling { '
            'step [ { model_name: "m" model_version: -1 }, { model_name: "m" model_version: -1 } ] }',
            ModelConfig(),
        )
        return {"e": ensemble, **model(f"max_batch_size: {limit} dynamic_batching {{}}")}

    # Four requests in flight, each through m twice: up to eight rows, which 8 holds exactly.
    assert behaviour(pipeline(8), 4, 1) != behaviour(pipeline(16), 4, 1)
    assert behaviour(pipeline(16), 4, 1) == behaviour(pipeline(32), 4, 1)
