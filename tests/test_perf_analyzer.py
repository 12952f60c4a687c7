"""perf_analyzer, the real binary, against the ensemble with real image payloads."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from perf import tools
from perf.drivers.perf_analyzer import (
    EmptyWindowError,
    PerfAnalyzer,
    PerfAnalyzerError,
    from_passes,
    parse_csv,
    parse_passes,
    write_input_data,
)
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
    analyzer = PerfAnalyzer(tools.find(), server.grpc_url, "ensemble_model", input_data, measurement_interval_ms=1000)
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
    # perf's own statistics: three windows, the requests they held, their spread.
    assert row["windows"] == 3 and row["throughput_sd"] >= 0
    assert 0.5 < row["requests"] / (row["throughput"] * windows_s) < 2, "windows of about the length asked"


def test_windows_too_short_for_one_request_are_widened_not_a_failed_row(
    server: EmbeddedServer, input_data: Path
) -> None:
    """Windows of 1 ms against an ensemble whose requests take 8 ms or more here: perf_analyzer
    stops at a window in which no request finished ("use a larger time window"). The level is
    measured again in windows twice as long until they hold requests: a row, not a failure,
    however busy the machine."""
    analyzer = PerfAnalyzer(tools.find(), server.grpc_url, "ensemble_model", input_data, measurement_interval_ms=1)
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(EmptyWindowError):  # one try at the window asked
        analyzer._run(analyzer.argv(1, Path(tmp) / "pa.csv"), deadline=60)
    row = analyzer.run(1)
    assert row["throughput"] > 0 and row["requests"] > 0 and row["p99_ms"] > 1


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


def test_windows_are_read_from_perf_analyzers_own_lines() -> None:
    # Verbose output of perf_analyzer 2.51 that gave up on a window where nothing finished.
    output = (
        "Request concurrency: 2\n"
        "  Pass [1] throughput: 159.582 infer/sec. Avg latency: 12386 usec (std 2673 usec). \n"
        "  Pass [2] throughput: 0 infer/sec. Avg latency: 0 usec (std 0 usec). \n"
        "  Pass [3] throughput: 176.357 infer/sec. Avg latency: 11318 usec (std 1995 usec). \n"
        "Failed to obtain stable measurement within 3 measurement windows for concurrency 2.\n"
    )
    passes = parse_passes(output)
    assert passes == [(159.582, 12.386), (0.0, 0.0), (176.357, 11.318)]
    row = from_passes(passes)
    assert row["throughput"] == pytest.approx((159.582 + 176.357) / 3) and row["windows"] == 3
    assert row["avg_ms"] == pytest.approx((159.582 * 12.386 + 176.357 * 11.318) / (159.582 + 176.357))
    assert "percentiles unknown" in row["note"] and "p99_ms" not in row


def test_no_images_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        write_input_data([], tmp_path / "x.json")
