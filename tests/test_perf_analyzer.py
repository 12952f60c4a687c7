"""perf_analyzer, the real binary, against the ensemble with real image payloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf import tools
from perf.drivers.perf_analyzer import PerfAnalyzer, PerfAnalyzerError, parse_csv, write_input_data
from perf.images import synthetic_set
from perf.server import EmbeddedServer


@pytest.fixture(scope="module")
def input_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    jpegs, _ = synthetic_set(8, seed=11)
    return write_input_data(jpegs, tmp_path_factory.mktemp("pa") / "input.json")


def completed(server: EmbeddedServer, model: str) -> int:
    (stats,) = server.statistics(model)
    return int(stats["inference_stats"]["success"].get("count", 0))


def test_perf_analyzer_measures_the_ensemble_with_images(server: EmbeddedServer, input_data: Path) -> None:
    # A loose stability bound: this test is about what is measured, not how precisely.
    analyzer = PerfAnalyzer(
        tools.find(),
        server.grpc_url,
        "ensemble_model",
        input_data,
        measurement_interval_ms=1000,
        stability_percentage=50,
    )
    before = completed(server, "ensemble_model")
    row = analyzer.run(2)
    sent = completed(server, "ensemble_model") - before
    assert row["concurrency"] == 2
    assert row["throughput"] > 5
    assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p95_ms"] <= row["p99_ms"]
    # Its measured windows are part of what the server served, never more.
    windows_s = 3 * analyzer.measurement_interval_ms / 1000
    assert sent >= row["throughput"] * windows_s * 0.5
    assert row["server_compute_infer_ms"] > 0


def test_perf_analyzer_error_is_reported(server: EmbeddedServer, input_data: Path) -> None:
    analyzer = PerfAnalyzer(tools.find(), server.grpc_url, "no_such_model", input_data)
    with pytest.raises(PerfAnalyzerError, match="no_such_model"):
        analyzer.run(1)


def test_csv_is_parsed_in_milliseconds(tmp_path: Path) -> None:
    csv = tmp_path / "pa.csv"
    # The header perf_analyzer 2.51 writes for an ensemble over gRPC.
    csv.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "4,230.7,15,2246,120,177,6829,577,2,16700,24000,26000,29700\n"
    )
    (row,) = parse_csv(csv)
    assert row["concurrency"] == 4 and row["throughput"] == pytest.approx(230.7)
    assert row["p99_ms"] == pytest.approx(29.7) and row["server_queue_ms"] == pytest.approx(0.12)


def test_no_images_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        write_input_data([], tmp_path / "x.json")
