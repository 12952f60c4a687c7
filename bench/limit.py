"""Benchmark: how close the served pipeline comes to what this machine can compute.

    .venv/bin/python bench/limit.py [--repeats 3] [--seconds 8] [--slo-p99-ms 50]

Three figures, measured in one run on the same generated 640x480 JPEGs:

- the ceiling: the same work done in-process, with no server and no client: the repository's
  own preprocess.py and the classifier's model.pt (FP32 hand-off) or model_pixels.pt (uint8
  hand-off), whichever is faster, one single-threaded worker process per core (OpenCV and
  torch at one thread each, as the served models are set), whole batches, no copies between
  the two steps;
- the baseline profile (model_repo/*/config.pbtxt) and the tuned profile
  (model_repo/*/configs/tuned.pbtxt) served by the embedded Triton and loaded by
  perf_analyzer over gRPC: the highest throughput at any concurrency whose p99 meets the SLO
  (levels from 1 up until p99 passes twice the SLO, then two bisection steps at the boundary).

Prints the figures as a Markdown table, with the command; both profiles' throughput at each
concurrency from 1 up (what the tuned profile's queue delay costs at light load); and, for the
tuned profile at its best level, where the remaining time goes: per composing model (Triton's
own statistics) and per process (CPU milliseconds per image: Triton, each model's python stub,
perf_analyzer, against the two cores' wall time per image).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from perf import host, tools
from perf.drivers.perf_analyzer import PerfAnalyzer, PerfAnalyzerError, write_input_data
from perf.images import read_and_pad_images, synthetic_set
from perf.observe import breakdown, cpu_seconds, snapshot
from perf.repository import PIXELS_MODEL_FILE, TORCHSCRIPT_FILE, open_repository, reference_repository
from perf.server import EmbeddedServer, Ports

IMAGES = 64
VARIANTS = ("float", "pixels")  # the hand-offs of the baseline and tuned profiles
LEVELS = (1, 2, 4, 6, 8, 12, 16, 20, 24, 32)  # until p99 passes twice the SLO
BISECT_STEPS = 2


def _worker(variant: str, batch: int, seconds: float, start: float, result: multiprocessing.Queue) -> None:
    """One core's share of the ceiling: decode, resize, normalize and classify, batch after
    batch, by the float hand-off (``float``: preprocess_rows into model.pt) or the pixels one
    (``pixels``: uint8 RGB into model_pixels.pt, which normalizes in its graph)."""
    import cv2
    import numpy as np
    import torch

    from perf.modelbuild import load_preprocess

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    repo = reference_repository()
    preprocess = load_preprocess(repo)
    folder = repo / "classifier" / "1"
    model = torch.jit.load(str(folder / (PIXELS_MODEL_FILE if variant == "pixels" else TORCHSCRIPT_FILE))).eval()

    def prepared(rows: np.ndarray) -> np.ndarray:
        if variant == "float":
            return preprocess.preprocess_rows(rows)
        pixels = np.empty((len(rows), preprocess.SIZE, preprocess.SIZE, 3), np.uint8)
        preprocess.decode_into(rows, pixels, rgb=True)
        return pixels

    jpegs = synthetic_set(IMAGES, seed=0)[0]
    batches = [read_and_pad_images([jpegs[(i + k) % IMAGES] for k in range(batch)]) for i in range(0, IMAGES, batch)]
    with torch.inference_mode():
        model(torch.from_numpy(prepared(batches[0])))  # warm
        while time.time() < start:
            time.sleep(0.01)
        done, turn = 0, 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            model(torch.from_numpy(prepared(batches[turn % len(batches)])))
            done += batch
            turn += 1
        result.put(done / (time.perf_counter() - began))


def ceiling(variant: str, batch: int, seconds: float) -> float:
    """Images/s of one worker process per core, all starting together."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    start = time.time() + 8  # after every worker has imported torch and loaded the model
    workers = [
        multiprocessing.Process(target=_worker, args=(variant, batch, seconds, start, queue))
        for _ in range(host.cores())
    ]
    for worker in workers:
        worker.start()
    rates = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def served(profile: str | None, slo_ms: float, seconds: float, workdir: Path) -> tuple[float, dict, dict[int, float]]:
    """The best throughput under the SLO, that level's measurement, and every level's throughput.
    LEVELS first, then bisection between the highest level within the SLO and the next one
    measured beyond it, as `perf sweep`'s load search does (16 met the SLO and 20 did not, here)."""
    tool = tools.find()
    workdir.mkdir(parents=True)
    data = write_input_data(synthetic_set(IMAGES, seed=0)[0], workdir / "input.json")
    rows: dict[int, dict] = {}
    with EmbeddedServer(reference_repository(), ports=Ports(*host.free_ports(3)), workdir=workdir / "server",
                        profile=profile) as server:  # fmt: skip
        models = ["ensemble_model", "preprocessor", "classifier"]
        analyzer = PerfAnalyzer(tool, server.grpc_url, "ensemble_model", data,
                                measurement_interval_ms=int(seconds * 1000))  # fmt: skip

        def measure(level: int) -> dict | None:
            analyzer.warm_up(level)
            before = snapshot(server, models)
            cpu_before, started = _cpu(server.pid), time.monotonic()
            try:
                row = analyzer.run(level)
            except PerfAnalyzerError as error:
                print(f"  {profile or 'baseline'} concurrency {level}: {error}", file=sys.stderr)
                return None
            elapsed, after = time.monotonic() - started, snapshot(server, models)
            images = after["ensemble_model"]["success"] - before["ensemble_model"]["success"]
            cpu = {name: 1000 * (used - cpu_before.get(name, 0.0)) / images for name, used in _cpu(server.pid).items()}
            row |= {"level": level, **breakdown(before, after), "cpu_ms": cpu,
                    "wall_ms": 1000 * elapsed * host.cores() / images}  # fmt: skip
            print(f"  {profile or 'baseline'} concurrency {level}: {row['throughput']:.1f} infer/s, "
                  f"p99 {row['p99_ms']:.1f} ms", file=sys.stderr)  # fmt: skip
            rows[level] = row
            return row

        for level in LEVELS:
            row = measure(level)
            if row is not None and row["p99_ms"] > 2 * slo_ms:
                break  # deeper queues only add latency
        low = max((level for level, row in rows.items() if row["p99_ms"] <= slo_ms), default=0)
        high = min((level for level in rows if level > low), default=None)
        for _ in range(BISECT_STEPS):
            if high is None or high - low < 2 or (row := measure((low + high) // 2)) is None:
                break
            low, high = (row["level"], high) if row["p99_ms"] <= slo_ms else (low, row["level"])
    within = [row for row in rows.values() if row["p99_ms"] <= slo_ms]
    best = max(within, key=lambda row: row["throughput"], default={})
    return best.get("throughput", 0.0), best, {level: row["throughput"] for level, row in rows.items()}


def _cpu(pid: int | None) -> dict[str, float]:
    """CPU seconds so far: the server's processes, and perf_analyzer's runs (this script's
    children that have exited: the server is a child too, but runs until the end)."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {**(cpu_seconds(pid) if pid else {}), "perf_analyzer": reaped.ru_utime + reaped.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5, help="measurement window (s)")
    parser.add_argument("--slo-p99-ms", type=float, default=50)
    args = parser.parse_args()
    open_repository(reference_repository(), "tuned")  # fails early, naming the fix, if the profile is missing
    figures: dict[str, list[float]] = {"ceiling": [], "baseline": [], "tuned": []}
    tuned_rows = []
    levels: dict[str, dict[int, dict[int, float]]] = {"baseline": {}, "tuned": {}}  # profile -> repeat -> level
    for repeat in range(args.repeats):
        ways = {(variant, batch): ceiling(variant, batch, args.seconds) for variant in VARIANTS for batch in (1, 8)}
        figures["ceiling"].append(max(ways.values()))
        print(f"repeat {repeat + 1}: in-process " + ", ".join(f"{v} x{b}: {r:.1f}" for (v, b), r in ways.items()),
              file=sys.stderr)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="perf-limit-") as tmp:
            throughput, _, levels["baseline"][repeat] = served(None, args.slo_p99_ms, args.seconds, Path(tmp) / "b")
            figures["baseline"].append(throughput)
            throughput, row, levels["tuned"][repeat] = served("tuned", args.slo_p99_ms, args.seconds, Path(tmp) / "t")
            figures["tuned"].append(throughput)
            tuned_rows.append(row)
    median = {name: statistics.median(values) for name, values in figures.items()}
    print(f"\n    .venv/bin/python {' '.join(sys.argv)}\n")
    print("| figure | runs (images/s) | median |\n| --- | --- | --- |")
    for name, values in figures.items():
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {median[name]:.1f} |")
    print(f"\ntuned / ceiling: {median['tuned'] / median['ceiling']:.0%} (goal 65 %); "
          f"tuned / baseline: {median['tuned'] / median['baseline']:.2f}x (goal 1.6x); tuned ahead of the "
          f"baseline in {sum(t > b for t, b in zip(figures['tuned'], figures['baseline'], strict=True))} "
          f"of {args.repeats} repeats")  # fmt: skip
    print("\nby load (medians of the repeats, images/s; light load is where a queue delay costs most):\n")
    print("| concurrency | baseline | tuned | tuned / baseline |\n| --- | --- | --- | --- |")
    for level in LEVELS:
        at = {name: [run[level] for run in runs.values() if level in run] for name, runs in levels.items()}
        if all(at.values()):
            base, tuned = statistics.median(at["baseline"]), statistics.median(at["tuned"])
            print(f"| {level} | {base:.1f} | {tuned:.1f} | {tuned / base:.2f}x |")
    row = max(tuned_rows, key=lambda r: r.get("throughput", 0))
    if row:
        print(f"\nthe tuned profile's best run, concurrency {row['level']}: p50 {row['p50_ms']:.1f} ms, "
              f"p99 {row['p99_ms']:.1f} ms; mean ms per request in each model:")  # fmt: skip
        for model in ("preprocessor", "classifier"):
            parts = ", ".join(f"{p} {row[f'{model}.{p}_ms']:.2f}" for p in
                              ("queue", "compute_input", "compute_infer", "compute_output"))  # fmt: skip
            print(f"  {model}: {parts}")
        cpu = row["cpu_ms"]
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(cpu.items(), key=lambda item: -item[1]))
        print(f"CPU ms per image, by process: {parts}; total {sum(cpu.values()):.2f}, against "
              f"{row['wall_ms']:.2f} ms of the {host.cores()} cores' wall time per image")  # fmt: skip


if __name__ == "__main__":
    main()
