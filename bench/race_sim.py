"""Benchmark, offline: how often the race finds the answer on seeded synthetic servers, and
what it measures to get there. No Triton: the tests' synthetic closed-loop server
(tests/test_search.py) with this machine's noise, white within a step and drifting over minutes.

    .venv/bin/python bench/race_sim.py --seeds 400

Two cases:
- Model Analyzer's classifier grid: two one-instance configs ``--gap`` of the two-instance
  ones' throughput (0.89: 11 % behind, at a 5 % margin), so the answer is the cheaper
  two-instance config; the share of races that find it, and the race measurements taken.
- Eight configs within 3 % of each other under 8 % noise (the design card's near-tie): the
  races whose answer is not the cheapest (a false drop), and the measurements taken."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.search.compose import strategy
from perf.search.cost import Cost
from tests.test_search import Config, race_of, raced, run


def ma_grid(seeds: int, noise: float, drift: float, gap: float) -> str:
    configs = {"c1_8": Config(2, 550 * gap), "c1_16": Config(2, 550 * gap), "c2_8": Config(2, 540),
               "c2_16": Config(2, 550), "base": Config(2, 545)}  # fmt: skip
    costs = {"c1_8": Cost(1, 0, 8), "c1_16": Cost(1, 0, 16), "c2_8": Cost(2, 0, 8), "c2_16": Cost(2, 0, 16),
             "base": Cost(2, 0, 64)}  # fmt: skip
    winners, measured = Counter(), []
    for seed in range(seeds):
        strat = strategy(list(configs), (1.0, 2.0, 4.0), None, None, costs)
        run(strat, configs, seed, noise, drift)
        race = race_of(strat)
        winners[race.winner] += 1
        measured.append(race.measured)
    return (f"MA grid: c2_8 (the answer) in {winners['c2_8']} of {seeds} races ({dict(winners)}); "
            f"race measurements median {statistics.median(measured):g}")  # fmt: skip


def near_tie(seeds: int, drift: float) -> str:
    configs = {f"p{i}": Config(5, 250 + i) for i in range(8)}
    costs = {p: Cost(1, 100, 64 + i) for i, p in enumerate(configs)}
    races = [raced(configs, costs, seed, 0.08, drift=drift) for seed in range(seeds)]
    wrong = sum(race.winner != "p0" for race in races)
    return (f"near-tie (drift {drift:g}): not the cheapest in {wrong} of {seeds} races; "
            f"race measurements median {statistics.median(r.measured for r in races):g}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--noise", type=float, default=0.023, help="within a step (relative)")
    parser.add_argument("--drift", type=float, default=0.06, help="the machine's wander over minutes")
    parser.add_argument("--gap", type=float, default=0.89, help="the one-instance configs' share of the best")
    args = parser.parse_args()
    print(ma_grid(args.seeds, args.noise, args.drift, args.gap))
    for drift in (0.0, args.drift):
        print(near_tie(args.seeds, drift))


if __name__ == "__main__":
    main()
