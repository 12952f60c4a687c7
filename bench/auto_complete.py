"""Benchmark: what Triton's config auto-complete costs a sweep, on the embedded server.

    .venv/bin/python bench/auto_complete.py [--runs 3]

perf starts Triton with --disable-auto-complete-config where no model needs it (the reference
repository's do not: `perf.repository.auto_completed`). Each run starts the server both ways,
in turn, and times the start and four reloads of the classifier that change its
max_batch_size (a whole-model reload, what most of a grid's applies are). Prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from perf import server
from perf.modelconfig import ModelConfig
from perf.repository import reference_repository


def one_run(auto_complete: bool) -> tuple[float, float]:
    """The server's start and the median reload, in seconds."""
    asked = ["classifier"] if auto_complete else []  # as if a model needed it: Triton's default
    with tempfile.TemporaryDirectory() as workdir, mock.patch.object(server, "auto_completed", return_value=asked):
        triton = server.EmbeddedServer(reference_repository(), workdir=Path(workdir), models_to_load=["classifier"])
        started = time.perf_counter()
        triton.start()
        start_s = time.perf_counter() - started
        try:
            reloads = []
            for batch in (8, 16, 8, 16):
                config = ModelConfig()
                config.CopyFrom(triton.model_config("classifier"))
                config.max_batch_size = batch
                del config.dynamic_batching.preferred_batch_size[:]
                started = time.perf_counter()
                triton.load_model("classifier", config)
                reloads.append(time.perf_counter() - started)
        finally:
            triton.stop()
    return start_s, statistics.median(reloads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    found: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.runs):
        for auto_complete in (True, False):
            found[auto_complete].append(one_run(auto_complete))
    for auto_complete, runs in found.items():
        starts, reloads = zip(*runs, strict=True)
        print(f"{'auto-complete on (Triton default)' if auto_complete else 'off (perf, this repository)':34} "
              f"start {statistics.median(starts):.2f} s ({', '.join(f'{s:.2f}' for s in starts)}), "
              f"reload {statistics.median(reloads):.2f} s ({', '.join(f'{r:.2f}' for r in reloads)})")  # fmt: skip


if __name__ == "__main__":
    main()
