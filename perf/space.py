"""Generated values of a setting: what `perf sweep --param NAME` tries when no --values are
given. They come from the model's own config and the host, so the one-line command
(`perf sweep --param preferred_batch_size`) is a sensible sweep as typed, and every value
passes the plan's checks (no preferred size above max_batch_size, no GPU the host lacks).
Pure: the host's GPU and core counts are arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perf.modelconfig import KIND_AUTO, KIND_GPU, ModelConfig, ModelInstanceGroup
from perf.params import ALIASES, ParamError, canonical_path

# A log scale, from not waiting at all to 10 ms: the delay's effect is on batching odds,
# which change by orders of magnitude, not by steps of 100 us.
QUEUE_DELAYS_US = (0, 100, 300, 1000, 3000, 10000)
# A config without instance groups gets Triton's default: one KIND_AUTO group.
_AUTO = ModelInstanceGroup(kind=KIND_AUTO)
# More instances than this per GPU only queue on the same streaming multiprocessors.
INSTANCES_PER_GPU = 4
COUNT = ALIASES["instance_count"]
KIND = ALIASES["kind"]


def generate(
    path: str, configs: list[ModelConfig], gpu_count: int, cores: int, kinds: list[str] | None = None
) -> list[Any]:
    """The values to try for the setting at ``path`` (a short name or its dotted path) on the
    models ``configs``: one model, or all the models a tied setting gives the same value.
    ``kinds``: the instance kinds swept beside it, if any (instance counts then reach the
    larger kind's limit; ``over_limit`` leaves out the points past their own kind's).
    ParamError, starting with ``path``, when perf has no rule for it or the models cannot take it."""
    canonical = canonical_path(path)
    generator = _GENERATORS.get(canonical)
    if generator is None:
        raise ParamError(f"{path}: give --values (perf generates values only for {', '.join(generated_names())})")
    if canonical == COUNT and kinds:
        return powers_of_two(1, max(2, *(instance_limit(kind, gpu_count, cores) for kind in kinds)))
    return generator(path, configs, gpu_count, cores)


def generated_names() -> list[str]:
    """The short names perf generates values for."""
    return [name for name, path in ALIASES.items() if path in _GENERATORS]


def powers_of_two(low: int, high: int) -> list[int]:
    """The powers of two from ``low`` to ``high``, both included where they are ones."""
    return [2**k for k in range(high.bit_length()) if low <= 2**k <= high]


def ladder(low: int, high: int) -> list[int]:
    """``low``, the powers of two between, and ``high``: batch sizes to try within limits that
    need not be powers of two themselves (48, 100)."""
    return sorted({low, *powers_of_two(low, high), high}) if low <= high else []


def _batch_limit(path: str, configs: list[ModelConfig]) -> int:
    """The largest batch every model takes; ParamError for a model that takes none."""
    if unbatched := [c.name for c in configs if c.max_batch_size == 0]:
        raise ParamError(
            f"{path}: {', '.join(unbatched)} has max_batch_size 0 (it takes no batches): there is no batch size to try"
        )
    return min(c.max_batch_size for c in configs)


def _preferred_batch_sizes(path: str, configs: list[ModelConfig], gpu_count: int, cores: int) -> list[Any]:
    """None (Triton batches up to max_batch_size), then one preferred size at a time."""
    return [[], *([size] for size in ladder(2, _batch_limit(path, configs)))]


def _max_batch_sizes(path: str, configs: list[ModelConfig], gpu_count: int, cores: int) -> list[Any]:
    """From the largest preferred size (a smaller limit would refuse it) up to the current limit
    (a larger one the model was never built or tested for)."""
    high = _batch_limit(path, configs)
    low = max(max(c.dynamic_batching.preferred_batch_size, default=1) for c in configs)
    if low > high:
        raise ParamError(
            f"{path}: a preferred_batch_size of {low} is above the max_batch_size {high} of one of "
            f"{', '.join(c.name for c in configs)}: give --values, or sweep the models one by one"
        )
    return ladder(low, high)


def instance_limit(kind: str | int, gpu_count: int, cores: int) -> int:
    """The most instances worth a group's ``count``: a CPU group's count is its instances, one
    a core; a GPU group's is instances on each of its GPUs, a few each (KIND_AUTO is a GPU
    group where there are GPUs)."""
    kind = ModelInstanceGroup.Kind.Value(kind) if isinstance(kind, str) else kind
    return INSTANCES_PER_GPU if gpu_count > 0 and kind in (KIND_GPU, KIND_AUTO) else cores


def over_limit(config: ModelConfig, gpu_count: int, cores: int) -> bool:
    """Whether a group of ``config`` has more instances than its kind is worth here."""
    return any(g.count > instance_limit(g.kind, gpu_count, cores) for g in config.instance_group)


def _instance_counts(path: str, configs: list[ModelConfig], gpu_count: int, cores: int) -> list[Any]:
    """1 up to what the host can run at once (``instance_limit``, the smallest of the models'
    groups); 1 and 2 at least, so a one-core host still shows whether a second instance helps."""
    limit = min(instance_limit(g.kind, gpu_count, cores) for c in configs for g in c.instance_group or [_AUTO])
    return powers_of_two(1, max(2, limit))


def _kinds(path: str, configs: list[ModelConfig], gpu_count: int, cores: int) -> list[Any]:
    return ["KIND_CPU", *(["KIND_GPU"] if gpu_count else [])]


def _queue_delays(path: str, configs: list[ModelConfig], gpu_count: int, cores: int) -> list[Any]:
    return list(QUEUE_DELAYS_US)


def _switch(path: str, configs: list[ModelConfig], gpu_count: int, cores: int) -> list[Any]:
    return [False, True]


_GENERATORS: dict[str, Callable[[str, list[ModelConfig], int, int], list[Any]]] = {
    ALIASES["instance_count"]: _instance_counts,
    ALIASES["kind"]: _kinds,
    ALIASES["max_batch_size"]: _max_batch_sizes,
    ALIASES["preferred_batch_size"]: _preferred_batch_sizes,
    ALIASES["max_queue_delay_microseconds"]: _queue_delays,
    ALIASES["preserve_ordering"]: _switch,
    ALIASES["response_cache"]: _switch,
}
