"""Benchmark: do idle configs loaded side by side slow the one being measured?

    .venv/bin/python bench/resident.py --copies 40 --rounds 2

Where every config of a sweep fits in memory, perf loads them all at once under their own
names (perf/variants.py), so a grid of 48 ensemble configs ends with about a hundred python
stubs resident, idle but for the one measured. This measures the reference ensemble (tuned
profile) at one concurrency with none of them loaded, then with ``--copies`` idle copies of
both composing models loaded beside it, then without again, ``--rounds`` times (A B A B), each
block ``--per-block`` measurements of the sweep's windows. Printed: each block's throughputs, the
memory available, and the two ways' means. If idle copies cost nothing, the two means agree
within the noise.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from perf import variants
from perf.drivers.perf_analyzer import PerfAnalyzer, write_input_data
from perf.images import synthetic_set
from perf.server import TritonServer, embedded_launcher
from perf.sweep import python_instances
from perf.tools import find

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["preprocessor", "classifier", "ensemble_model"]
COPIED = ["preprocessor", "classifier"]


def unload(server: TritonServer) -> Callable[[str], None]:
    def one(name: str) -> None:
        with server.client() as client:
            client.unload_model(name)

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-block", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="perf-resident-"))
    blobs, _ = synthetic_set(32, seed=0)
    data = write_input_data(blobs, workdir / "input.json")
    with embedded_launcher(ROOT / "model_repo", workdir, MODELS, profile="tuned")({}) as server:
        serving = {m: server.model_config(m) for m in MODELS}
        copies = [variants.name_of(m, f"idle{k}") for k in range(args.copies) for m in COPIED]
        for name in copies:
            model = name.split("__")[0]
            config = type(serving[model])()
            config.CopyFrom(serving[model])
            config.name = name
            variants.stage(server.staged.path, model, name, config)
        driver = PerfAnalyzer(find(), server.grpc_url, "ensemble_model", data, measurement_interval_ms=1000)
        driver.warm_up(args.concurrency)
        results: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for way in ("alone", f"beside {args.copies} idle copies"):
                loaded = way != "alone"
                with ThreadPoolExecutor(len(copies)) as pool:  # Triton loads and unloads in parallel
                    list(pool.map(server.load_model if loaded else unload(server), copies))
                stubs = python_instances(serving, 0) * (1 + args.copies * loaded)
                server.settle(stubs, timeout=120)
                driver.warm_up(args.concurrency)
                block = [driver.run(args.concurrency)["throughput"] for _ in range(args.per_block)]
                results.setdefault(way, []).extend(block)
                available = psutil.virtual_memory().available / 2**30
                print(f"{way:28} {[round(v) for v in block]}  ({available:.1f} GiB available)", flush=True)
    for way, values in results.items():
        mean, cv = statistics.fmean(values), statistics.stdev(values) / statistics.fmean(values)
        print(f"{way:28} mean {mean:6.1f} infer/s, CV {cv:5.1%} over {len(values)}")


if __name__ == "__main__":
    main()
