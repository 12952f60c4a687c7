"""Benchmark: the cost of applying a config variant, reload (model-control API) against
restart (write config.pbtxt, restart Triton), on the embedded server.

    .venv/bin/python bench/apply_cost.py [--runs 5]

Each run alternates the classifier between instance_count 1 and 2, so every apply changes
something real; a run is timed until the variant serves (the server's own readiness), the
way `perf sweep` applies it. Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from perf import host
from perf.modelconfig import for_host
from perf.repository import open_repository, reference_repository
from perf.server import EmbeddedServer, Ports

MODELS = ["ensemble_model", "preprocessor", "classifier"]


def variant(count: int):
    config = for_host(open_repository(reference_repository()).configs["classifier"], len(host.gpus()))
    config.instance_group[0].count = count
    return config


def reload_times(runs: int, workdir: Path) -> list[float]:
    times = []
    with EmbeddedServer(reference_repository(), ports=Ports(*host.free_ports(3)), workdir=workdir,
                        models_to_load=MODELS) as server:  # fmt: skip
        for i in range(runs):
            config = variant(1 + (i + 1) % 2)
            start = time.perf_counter()
            server.load_model("classifier", config)
            times.append(time.perf_counter() - start)
    return times


def restart_times(runs: int, workdir: Path) -> list[float]:
    times = []
    server = EmbeddedServer(reference_repository(), ports=Ports(*host.free_ports(3)), workdir=workdir,
                            models_to_load=MODELS)  # fmt: skip
    server.start()
    try:
        for i in range(runs):
            start = time.perf_counter()
            server.stop()
            server.overrides = {"classifier": variant(1 + (i + 1) % 2)}
            server.start()
            times.append(time.perf_counter() - start)
    finally:
        server.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        reload = reload_times(runs, Path(tmp) / "reload")
        restart = restart_times(runs, Path(tmp) / "restart")
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"reload  (s): {fmt(reload)}  median {statistics.median(reload):.2f}")
    print(f"restart (s): {fmt(restart)}  median {statistics.median(restart):.2f}")
    print(f"restart / reload: {statistics.median(restart) / statistics.median(reload):.1f}x")


if __name__ == "__main__":
    main()
