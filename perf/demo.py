"""The README's main job: serve the ensemble, classify a few images, measure it under load."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perf import tools
from perf.client import Prediction, classify, read_labels
from perf.drivers.perf_analyzer import PerfAnalyzer, write_input_data
from perf.images import CLASSES, synthetic_set
from perf.server import EmbeddedServer, Ports

MODEL = "ensemble_model"


@dataclass
class DemoResult:
    ready_s: float
    predictions: list[tuple[str, Prediction]]  # (true label, prediction)
    load: list[dict[str, float]]


def run(
    repo: Path,
    ports: Ports,
    concurrency: list[int],
    images: int = 16,
    measurement_interval_ms: int = 2000,
    log: Callable[[str], None] = print,
) -> DemoResult:
    tool = tools.find()
    labels_path = repo / "classifier" / "labels.txt"
    if not (repo / "classifier" / "1" / "model.pt").is_file():
        raise tools.ToolsError(f"{repo} has no classifier/1/model.pt: run `perf model build`")
    with tempfile.TemporaryDirectory(prefix="perf-demo-") as tmp:
        server = EmbeddedServer(repo, ports=ports, workdir=Path(tmp) / "server")
        start = time.perf_counter()
        with server:
            ready_s = time.perf_counter() - start
            log(f"Triton ready in {ready_s:.1f} s (gRPC {server.grpc_url}, log {server.log_path})")
            # Fresh images the classifier never saw, 640x480 like a camera's.
            jpegs, truth = synthetic_set(images, seed=2026)
            predictions = classify(server.grpc_url, MODEL, jpegs[:10], read_labels(labels_path))
            named = [(CLASSES[t], p) for t, p in zip(truth[:10], predictions, strict=True)]
            analyzer = PerfAnalyzer(
                tool,
                server.grpc_url,
                MODEL,
                write_input_data(jpegs, Path(tmp) / "input.json"),
                measurement_interval_ms=measurement_interval_ms,
            )
            load = []
            for level in concurrency:
                log(f"perf_analyzer: concurrency {level} ...")
                load.append(analyzer.run(level))
    return DemoResult(ready_s, named, load)
