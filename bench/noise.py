"""Benchmark: where the noise between measurements comes from.

    .venv/bin/python bench/noise.py --rounds 8

The classifier alone, two configs (one instance and two, max_batch_size 16), measured at
concurrency 4 with the sweep's windows (3 x 500 ms): one config again and again with nothing in
between; the two loaded side by side (as a race loads them) and alternated; and the two
alternated by reloading one model. Printed: each way's throughputs, mean and coefficient of
variation. If the reload added noise, the third would spread more than the first two.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from perf import variants
from perf.drivers.perf_analyzer import PerfAnalyzer
from perf.modelconfig import ModelConfig
from perf.server import embedded_launcher
from perf.sweep import python_instances
from perf.tools import find

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="perf-noise-"))
    with embedded_launcher(ROOT / "model_repo", workdir, ["classifier"])({}) as server:
        base = server.model_config("classifier")
        configs = []
        for count in (1, 2):
            config = ModelConfig()
            config.CopyFrom(base)
            config.instance_group[0].count = count
            config.max_batch_size = 16
            del config.dynamic_batching.preferred_batch_size[:]
            configs.append(config)
        names = []
        for k, config in enumerate(configs):
            copy = ModelConfig()
            copy.CopyFrom(config)
            copy.name = variants.name_of("classifier", f"noise{k}")
            variants.stage(server.staged.path, "classifier", copy.name, copy)
            server.load_model(copy.name)
            names.append(copy.name)
        drivers = {n: PerfAnalyzer(find(), server.grpc_url, n, None, measurement_interval_ms=500) for n in names}
        for driver in drivers.values():
            driver.warm_up(4)
        results: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            results.setdefault("same config, in a row", []).append(drivers[names[0]].run(4)["throughput"])
        for _ in range(args.rounds):
            for k, name in enumerate(names):
                results.setdefault(f"side by side, config {k}", []).append(drivers[name].run(4)["throughput"])
        reloaded = PerfAnalyzer(find(), server.grpc_url, "classifier", None, measurement_interval_ms=500)
        for _ in range(args.rounds):
            for k, config in enumerate(configs):
                server.load_model("classifier", config)
                reloaded.warm_up(4)
                copies = {name: configs[j] for j, name in enumerate(names)}
                server.settle(python_instances({"classifier": config, **copies}, 0))
                results.setdefault(f"by reload, config {k}", []).append(reloaded.run(4)["throughput"])
    for way, values in results.items():
        mean, cv = statistics.fmean(values), statistics.stdev(values) / statistics.fmean(values)
        print(f"{way:24} mean {mean:6.1f} infer/s, CV {cv:5.1%}  {[round(v) for v in values]}")


if __name__ == "__main__":
    main()
