"""Benchmark: what measuring while replaced instances exit costs.

    .venv/bin/python bench/settle.py --rounds 8

Two classifier configs of the reference ensemble (preferred_batch_size [16] and [32]) are
alternated by reload; after each reload and a warm-up window, the ensemble is measured at
concurrency 4, either at once or after waiting until the replaced python stubs have exited
(what `perf sweep` does). The two ways alternate round by round, so drift hits both alike.
Printed: each way's throughputs per config, their mean and coefficient of variation."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from perf.drivers.perf_analyzer import PerfAnalyzer, write_input_data
from perf.images import synthetic_set
from perf.server import embedded_launcher
from perf.sweep import python_instances
from perf.tools import find

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["preprocessor", "classifier", "ensemble_model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="perf-settle-"))
    blobs, _ = synthetic_set(32, seed=0)
    data = write_input_data(blobs, workdir / "input.json")
    with embedded_launcher(ROOT / "model_repo", workdir, MODELS)({}) as server:
        base = server.model_config("classifier")
        configs = []
        for size in (16, 32):
            config = type(base)()
            config.CopyFrom(base)
            del config.dynamic_batching.preferred_batch_size[:]
            config.dynamic_batching.preferred_batch_size.append(size)
            configs.append(config)
        serving = {m: server.model_config(m) for m in MODELS}
        driver = PerfAnalyzer(find(), server.grpc_url, "ensemble_model", data, measurement_interval_ms=500)
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for way in ("at once", "after the wait"):
                for k, config in enumerate(configs):
                    server.load_model("classifier", config)
                    server.load_model("ensemble_model")
                    driver.warm_up(4)
                    if way == "after the wait":
                        server.settle(python_instances(serving, 0))
                    results.setdefault((way, k), []).append(driver.run(4)["throughput"])
    for (way, k), values in sorted(results.items()):
        mean = statistics.fmean(values)
        cv = statistics.stdev(values) / mean
        print(f"{way:15} config {k}: {[round(v) for v in values]} mean {mean:.1f} infer/s, CV {cv:.1%}")


if __name__ == "__main__":
    main()
