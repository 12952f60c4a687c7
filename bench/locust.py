"""Benchmark: Locust's users against perf_analyzer, side by side in one run.

1. Throughput on the ensemble at equal concurrency (closed loop): perf's Locust gRPC user
   against perf_analyzer, each level repeated with the order of the two alternating; the
   medians and their ratio (goal: Locust at least 90 % of perf_analyzer). Both go through the
   sweep's drivers, so this measures what `perf sweep --driver locust|perf_analyzer` measures.
2. The client's own cost against a trivial model (a python-backend model that answers with
   the length of what it got, fed 8x8 PNGs): requests per second of client CPU, for
   perf_analyzer, the Locust gRPC user and the Locust HTTP user. Requests are counted by
   Triton (its statistics, before and after each run), CPU by the kernel (the finished
   client process's user + system time).

The machine is shared (2 cores; the server, the client and whatever else runs): compare the
figures of one run with each other, not with another run's.

    .venv/bin/python bench/locust.py --concurrency 2 4 --repeats 3 --window 2000
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from perf import host, tools
from perf.drivers import Driver
from perf.drivers.locust import Locust
from perf.drivers.perf_analyzer import PerfAnalyzer, write_input_data
from perf.images import encode, image_files, synthetic_set
from perf.repository import reference_repository
from perf.server import EmbeddedServer, Ports

ENSEMBLE = "ensemble_model"
TRIVIAL = "trivial"
# On a shared 2-core machine perf_analyzer's default 10 % bound often never settles.
TRIVIAL_CONFIG = """name: "trivial"
backend: "python"
max_batch_size: 8
input [{ name: "RAW_IMAGE", data_type: TYPE_UINT8, dims: [ -1 ] }]
output [{ name: "LENGTH", data_type: TYPE_INT32, dims: [ 1 ] }]
instance_group [{ count: 1, kind: KIND_CPU }]
"""
TRIVIAL_MODEL = '''import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Answers each request with the length of its RAW_IMAGE rows: next to no server work."""

    def execute(self, requests):
        answers = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "RAW_IMAGE").as_numpy()
            length = np.full((rows.shape[0], 1), rows.shape[1], dtype=np.int32)
            answers.append(pb_utils.InferenceResponse([pb_utils.Tensor("LENGTH", length)]))
        return answers
'''


def trivial_repository(folder: Path) -> Path:
    model = folder / "repo" / TRIVIAL
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(TRIVIAL_CONFIG)
    (model / "1" / "model.py").write_text(TRIVIAL_MODEL)
    return folder / "repo"


def tiny_images(folder: Path, count: int = 8) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        (folder / f"tiny_{i}.png").write_bytes(encode(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), ".png"))
    return folder


def served(server: EmbeddedServer, model: str) -> int:
    """Triton's count of successful requests, once it stops moving (it counts just after answering)."""
    count = -1
    while True:
        previous, count = count, int(server.statistics(model)[0]["inference_stats"]["success"].get("count", 0))
        if count == previous:
            return count
        time.sleep(0.3)


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(server: EmbeddedServer, model: str, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """One run of a driver: its row, with Triton's request count and the client's CPU seconds."""
    requests, cpu = served(server, model), client_cpu_s()
    row = run()
    row["requests"] = served(server, model) - requests
    row["client_cpu_s"] = client_cpu_s() - cpu
    return row


def alternating(drivers: dict[str, Driver], level: float, repeats: int, server: EmbeddedServer, model: str) -> dict:
    """Each driver ``repeats`` times at ``level``, the order turning round each repeat."""
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in drivers}
    for driver in drivers.values():
        driver.warm_up(level)
    for repeat in range(repeats):
        names = list(drivers)[:: 1 if repeat % 2 == 0 else -1]
        for name in names:
            rows[name].append(measured(server, model, lambda d=drivers[name]: d.run(level)))
            print(f"  {model} concurrency {level:g} {name}: {rows[name][-1]['throughput']:.1f}/s", flush=True)
    return rows


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def ensemble_throughput(args: argparse.Namespace, work: Path) -> list[str]:
    blobs = [p.read_bytes() for p in image_files(args.images)] if args.images else synthetic_set(32, seed=0)[0]
    input_data = write_input_data(blobs, work / "input.json")
    with EmbeddedServer(reference_repository(), ports=Ports(*host.free_ports(3)), workdir=work / "ensemble") as server:
        lines = ["| concurrency | perf_analyzer infer/s | Locust gRPC infer/s | Locust / perf_analyzer | "
                 "p50 ms PA / Locust |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for level in args.concurrency:
            drivers: dict[str, Driver] = {
                "perf_analyzer": PerfAnalyzer(
                    tools.find(),
                    server.grpc_url,
                    ENSEMBLE,
                    input_data,
                    measurement_interval_ms=args.window,
                ),
                "locust_grpc": Locust(server.grpc_url, ENSEMBLE, args.images, window_ms=args.window),
            }
            rows = alternating(drivers, level, args.repeats, server, ENSEMBLE)
            pa, lo = median(rows["perf_analyzer"], "throughput"), median(rows["locust_grpc"], "throughput")
            p50 = f"{median(rows['perf_analyzer'], 'p50_ms'):.1f} / {median(rows['locust_grpc'], 'p50_ms'):.1f}"
            lines.append(f"| {level:g} | {pa:.1f} | {lo:.1f} | {lo / pa:.1%} | {p50} |")
    return lines


def client_cost(args: argparse.Namespace, work: Path) -> list[str]:
    images = tiny_images(work / "tiny")
    input_data = write_input_data([p.read_bytes() for p in sorted(images.iterdir())], work / "tiny.json")
    repo = trivial_repository(work)
    with EmbeddedServer(repo, ports=Ports(*host.free_ports(3)), workdir=work / "trivial") as server:
        drivers: dict[str, Driver] = {
            "perf_analyzer": PerfAnalyzer(
                tools.find(), server.grpc_url, TRIVIAL, input_data, measurement_interval_ms=args.window
            ),
            "locust_grpc": Locust(server.grpc_url, TRIVIAL, images, window_ms=args.window),
            "locust_http": Locust(server.http_url, TRIVIAL, images, window_ms=args.window, protocol="http"),
        }
        level = args.cost_concurrency
        rows = alternating(drivers, level, args.repeats, server, TRIVIAL)
    lines = [f"| client (concurrency {level:g}, trivial model) | requests/s | client CPU s per run (with start-up) | "
             "requests per client CPU-second |", "| --- | --- | --- | --- |"]  # fmt: skip
    for name, samples in rows.items():
        per_cpu = statistics.median(r["requests"] / r["client_cpu_s"] for r in samples)
        load = median(samples, "throughput")
        lines.append(f"| {name} | {load:.0f} | {median(samples, 'client_cpu_s'):.1f} | {per_cpu:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=float, nargs="+", default=[2, 4])
    parser.add_argument("--cost-concurrency", type=float, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=2000, help="measurement window, ms (Locust runs three)")
    parser.add_argument("--images", type=Path, help="folder of JPEG/PNG for the ensemble (default: generated)")
    args = parser.parse_args()
    print(f"host: {host.cores()} cores, shared with the server and anything else running")
    with tempfile.TemporaryDirectory(prefix="perf-bench-locust-") as tmp:
        work = Path(tmp)
        for line in [*ensemble_throughput(args, work), "", *client_cost(args, work)]:
            print(line)


if __name__ == "__main__":
    main()
