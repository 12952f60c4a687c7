"""What a config costs to run, for choosing among configs equally fast: fewer instances first,
then less memory, then a shorter queue delay, then smaller batches. A tie at equal speed goes
to the cheapest, so equivalent survivors give the same answer run after run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from perf.modelconfig import ModelConfig

# Memory is measured, so noisy: within this ratio of the least, two configs cost the same.
MEMORY_TOLERANCE = 1.25


@dataclass(frozen=True)
class Cost:
    instances: int  # model instances, all models together
    queue_delay_us: int  # the dynamic batchers' delays, added up
    batch: int  # max_batch_size plus the largest preferred size (max_batch_size when none), added up

    def describe(self) -> str:
        return f"{self.instances} instances, {self.queue_delay_us} us queue delay, batch sizes {self.batch}"


def cost(configs: dict[str, ModelConfig]) -> Cost:
    """The cost of a config given as each model's ModelConfig."""
    instances = delay = batch = 0
    for config in configs.values():
        if config.platform == "ensemble":
            continue
        instances += sum(max(1, group.count) for group in config.instance_group) or 1
        batching = config.dynamic_batching
        if config.HasField("dynamic_batching"):
            delay += batching.max_queue_delay_microseconds
            preferred = max(batching.preferred_batch_size, default=config.max_batch_size)
            batch += config.max_batch_size + preferred
        else:
            batch += config.max_batch_size
    return Cost(instances, delay, batch)


def cheapest(points: list[str], costs: dict[str, Cost], memory_mb: dict[str, float], speed: dict[str, float]) -> str:
    """The cheapest of ``points`` by the declared order; the faster one where all else is equal."""
    pool = list(points)
    fewest = min(costs[p].instances for p in pool)
    pool = [p for p in pool if costs[p].instances == fewest]
    known = [memory_mb[p] for p in pool if not math.isnan(memory_mb.get(p, math.nan))]
    if known:
        least = min(known)
        pool = [p for p in pool if math.isnan(memory_mb.get(p, math.nan)) or memory_mb[p] <= least * MEMORY_TOLERANCE]
    shortest = min(costs[p].queue_delay_us for p in pool)
    pool = [p for p in pool if costs[p].queue_delay_us == shortest]
    smallest = min(costs[p].batch for p in pool)
    pool = [p for p in pool if costs[p].batch == smallest]
    return max(pool, key=lambda p: speed.get(p, 0.0))
