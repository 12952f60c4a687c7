"""Load with NVIDIA's perf_analyzer: one closed-loop concurrency level per run, CSV parsed into
rows with named units (ms, infer/s) instead of perf_analyzer's microsecond columns."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perf.tools import Tools

# perf_analyzer CSV column (microseconds) -> our column (milliseconds).
LATENCY_COLUMNS = {
    "p50 latency": "p50_ms",
    "p90 latency": "p90_ms",
    "p95 latency": "p95_ms",
    "p99 latency": "p99_ms",
    "Avg latency": "avg_ms",
    "Client Send": "client_send_ms",
    "Network+Server Send/Recv": "network_ms",
    "Server Queue": "server_queue_ms",
    "Server Compute Input": "server_compute_input_ms",
    "Server Compute Infer": "server_compute_infer_ms",
    "Server Compute Output": "server_compute_output_ms",
    "Client Recv": "client_recv_ms",
}


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer failed; the message carries its own explanation."""


def write_input_data(images: list[bytes], path: Path, input_name: str = "RAW_IMAGE") -> Path:
    """perf_analyzer's --input-data file: one step per image, each a UINT8 row of its bytes.
    perf_analyzer cycles through the steps, so every request carries a real image."""
    steps = [{input_name: {"b64": base64.b64encode(blob).decode("ascii"), "shape": [len(blob)]}} for blob in images]
    if not steps:
        raise ValueError("perf_analyzer needs at least one image")
    path.write_text(json.dumps({"data": steps}))
    return path


@dataclass
class PerfAnalyzer:
    """How to measure: the same settings apply to every level it runs."""

    tools: Tools
    url: str
    model: str
    input_data: Path
    batch_size: int = 1
    measurement_interval_ms: int = 2000
    stability_percentage: int = 10
    max_trials: int = 10
    timeout_s: float = 300
    extra_args: list[str] = field(default_factory=list)

    def argv(self, concurrency: int, csv_path: Path) -> list[str]:
        return [
            str(self.tools.perf_analyzer),
            "-m", self.model,
            "-u", self.url,
            "-i", "grpc",
            "-b", str(self.batch_size),
            "--concurrency-range", f"{concurrency}:{concurrency}",
            "--input-data", str(self.input_data),
            "--measurement-interval", str(self.measurement_interval_ms),
            "--stability-percentage", str(self.stability_percentage),
            "--max-trials", str(self.max_trials),
            "-f", str(csv_path),
            *self.extra_args,
        ]  # fmt: skip

    def run(self, concurrency: int) -> dict[str, float]:
        """Measure one concurrency level; the row perf_analyzer reports for it."""
        with tempfile.TemporaryDirectory(prefix="perf-pa-") as tmp:
            csv_path = Path(tmp) / "pa.csv"
            try:
                proc = subprocess.run(
                    self.argv(concurrency, csv_path),
                    env=self.tools.perf_analyzer_env(),
                    capture_output=True,
                    text=True,
                    timeout=self.timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise PerfAnalyzerError(f"perf_analyzer did not finish within {self.timeout_s:.0f} s") from None
            if proc.returncode != 0 or not csv_path.is_file():
                message = _error_lines(proc.stdout + proc.stderr)
                raise PerfAnalyzerError(f"perf_analyzer failed at concurrency {concurrency}: {message}")
            return parse_csv(csv_path)[0]


def _error_lines(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return " | ".join(errors[-3:] or lines[-3:]) or "(no output)"


def parse_csv(path: Path) -> list[dict[str, float]]:
    """perf_analyzer's CSV to rows: concurrency, throughput (infer/s) and latencies in ms."""
    frame = pd.read_csv(path)
    rows = []
    for _, record in frame.iterrows():
        row = {
            "concurrency": int(record["Concurrency"]),
            "throughput": float(record["Inferences/Second"]),
        }
        for source, name in LATENCY_COLUMNS.items():
            if source in record:
                row[name] = float(record[source]) / 1000.0
        rows.append(row)
    return rows
