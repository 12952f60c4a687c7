"""Configs that run alike at a load level.

With ``C`` requests in flight in a closed loop, each of ``b`` rows, a model's dynamic batcher
never holds more than ``C x b`` rows for each time the model is called per request. A
max_batch_size above that is never reached, whatever it is, and neither is a preferred size
above it (the batcher then sends what it has when the queue delay ends, as it does with no
preferred size). Two configs that differ only in such settings are one config twice at that
level: racing both splits the measurements between them, and the costlier one can win on
noise alone (the Model Analyzer grid at concurrency 4: max_batch_size 8 and 16 read up to 7 %
apart within one race). The race keeps the cheaper one.

Pure: the configs are given, nothing is measured.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from perf.modelconfig import ModelConfig


def behaviour(configs: dict[str, ModelConfig], concurrency: float, rows: int) -> str:
    """A key equal for configs (each model's ModelConfig) that run alike at closed-loop
    ``concurrency`` with ``rows`` rows a request: a max_batch_size no batch can reach there,
    and the preferred sizes none can, are left out of it."""
    calls = Counter(
        step.model_name
        for config in configs.values()
        if config.platform == "ensemble"
        for step in config.ensemble_scheduling.step
    )
    digest = hashlib.sha256()
    for name in sorted(configs):
        config = ModelConfig()
        config.CopyFrom(configs[name])
        most = int(concurrency) * rows * max(1, calls[name])
        if config.max_batch_size > most and not config.HasField("sequence_batching"):
            config.max_batch_size = most + 1  # out of reach, however far
            preferred = config.dynamic_batching.preferred_batch_size
            reached = [size for size in preferred if size <= most]
            del preferred[:]
            preferred.extend(reached)
        digest.update(name.encode() + b"\0" + config.SerializeToString(deterministic=True) + b"\0")
    return digest.hexdigest()[:16]
