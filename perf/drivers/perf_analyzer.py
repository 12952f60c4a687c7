"""Load with NVIDIA's perf_analyzer: one load level per run, CSV parsed into rows with named
units (ms, infer/s) instead of perf_analyzer's microsecond columns.

perf keeps its own statistics: perf_analyzer runs a fixed number of windows with its stability
rule switched off (a bound no pair of windows can break), and every row carries the windows'
count, the requests they held and their throughput's spread. A noisy machine widens that
spread; it never costs the row. Where perf_analyzer still gives up (a window in which no
request finished), the row is computed from the windows it printed; where it stops at such a
window before printing enough of them, the level is measured again in windows twice as long."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perf import host
from perf.drivers import DriverError, DriverTimeout, deadline_s
from perf.modelconfig import ModelConfig
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


LOAD_KINDS = ("concurrency", "request_rate")
# A stability bound no pair of windows breaks (max/min <= 1 + 1000): perf_analyzer measures the
# windows asked for and reports them; whether they agree is perf's to judge, from their spread.
NO_STABILITY_RULE = "100000"
WINDOWS = 3  # perf_analyzer's stability window: it reports the last three windows
MAX_WINDOW_MS = 10_000  # windows that held no finished request are doubled up to this
SLOWEST = 10  # inferences a second a model of count windows is given time for
# Its verbose line for each window, e.g. "Pass [2] throughput: 176.357 infer/sec. Avg latency: 11318 usec".
_PASS = re.compile(r"Pass \[(\d+)\] throughput: ([0-9.]+) infer/sec\. Avg latency: ([0-9.]+) usec")
_REQUESTS = re.compile(r"Request count: (\d+)")


class PerfAnalyzerError(DriverError):
    """perf_analyzer failed; the message carries its own explanation."""


class EmptyWindowError(PerfAnalyzerError):
    """perf_analyzer stopped at a window in which no request finished."""


def payload(blob: bytes, shape: list[int]) -> dict[str, object]:
    """One input's bytes as perf_analyzer's input data carries them."""
    return {"b64": base64.b64encode(blob).decode("ascii"), "shape": shape}


def write_input_data(images: list[bytes], path: Path, input_name: str = "RAW_IMAGE") -> Path:
    """perf_analyzer's --input-data file: one step per image, each a UINT8 row of its bytes.
    perf_analyzer cycles through the steps, so every request carries a real image."""
    steps = [{input_name: payload(blob, [len(blob)])} for blob in images]
    if not steps:
        raise ValueError("perf_analyzer needs at least one image")
    path.write_text(json.dumps({"data": steps}))
    return path


_SHAPE = re.compile(r"^([^:\s]+):(\d+(?:,\d+)*)$")


def model_args(config: ModelConfig, shapes: tuple[str, ...] = ()) -> list[str]:
    """What perf_analyzer must be told of a model that it cannot read from its config: a
    decoupled model answers on a stream, and inputs of variable size need a shape. (A sequence
    model it handles itself: it reads the sequence batcher and sends sequences.)"""
    args = ["--streaming"] if config.model_transaction_policy.decoupled else []
    for shape in shapes:
        args += ["--shape", shape]
    return args


def input_problems(config: ModelConfig, shapes: tuple[str, ...], has_data: bool) -> list[str]:
    """Why perf_analyzer could not make requests for ``config``'s inputs: a variable size with
    no --shape (perf's image data sets its own), or a --shape that names no input."""
    problems, given = [], {}
    for shape in shapes:
        if match := _SHAPE.match(shape):
            given[match.group(1)] = match.group(2)
        else:
            problems.append(f"--shape {shape!r}: write NAME:DIM,DIM (for example INPUT0:8,16)")
    names = [i.name for i in config.input]
    problems += [f"--shape {name}: {config.name} has no input {name} (its inputs: {', '.join(names)})"
                 for name in given if name not in names]  # fmt: skip
    if has_data:
        return problems
    for tensor in config.input:
        dims = list(tensor.dims)
        if any(d < 0 for d in dims) and tensor.name not in given:
            example = ",".join("8" if d < 0 else str(d) for d in dims)
            problems.append(f"input {tensor.name} of {config.name} has dims {dims}, of variable size: say what to "
                            f"send, as --shape {tensor.name}:{example}")  # fmt: skip
    return problems


@dataclass
class PerfAnalyzer:
    """How to measure: the same settings apply to every level it runs."""

    tools: Tools
    url: str
    model: str
    input_data: Path | None  # None: perf_analyzer's own random data, for fixed-shape inputs
    batch_size: int = 1
    measurement_interval_ms: int = 2000
    # Windows of this many requests instead of a fixed time (perf_analyzer's count_windows):
    # fast models fill a window in a fraction of a second.
    measurement_requests: int | None = None
    extra_args: list[str] = field(default_factory=list)

    def argv(self, level: float, csv_path: Path, kind: str = "concurrency", window_ms: int | None = None,
             windows: int = WINDOWS) -> list[str]:  # fmt: skip
        if kind not in LOAD_KINDS:
            raise ValueError(f"load kind {kind!r}: choose {' or '.join(LOAD_KINDS)}")
        value = f"{level:g}"
        return [
            str(self.tools.perf_analyzer),
            "-m", self.model,
            "-u", self.url,
            "-i", "grpc",
            "-b", str(self.batch_size),
            f"--{kind.replace('_', '-')}-range", f"{value}:{value}",
            *(["--input-data", str(self.input_data)] if self.input_data else []),
            *self._window_args(window_ms),
            "--stability-percentage", NO_STABILITY_RULE,
            "--max-trials", str(windows),
            "-f", str(csv_path),
            "-v",  # one line per window (perf reads them)
            *self.extra_args,
        ]  # fmt: skip

    def _window_args(self, window_ms: int | None) -> list[str]:
        if window_ms is None and self.measurement_requests:
            return [
                "--measurement-mode",
                "count_windows",
                "--measurement-request-count",
                str(self.measurement_requests),
            ]
        return ["--measurement-interval", str(window_ms or self.measurement_interval_ms)]

    def warm_up(self, level: float, kind: str = "concurrency") -> None:
        """One unmeasured window so the first measurement does not pay for cold caches and
        stubs just reloaded; its failures are the measurement's to report."""
        with tempfile.TemporaryDirectory(prefix="perf-pa-") as tmp, contextlib.suppress(PerfAnalyzerError):
            self._run(self.argv(level, Path(tmp) / "pa.csv", kind, windows=1), self._deadline(None, 1))

    def run(self, level: float, kind: str = "concurrency") -> dict[str, float]:
        """Measure one load level (a concurrency, or a request rate per second). A window in
        which no request finished stops perf_analyzer ("use a larger time window"): on a busy
        machine, or at a level deep enough, one request can outlast a window. The level is then
        measured again in windows twice as long, up to ``MAX_WINDOW_MS``: noise must not cost
        the row; a server that finishes nothing in such a window has failed."""
        window = None
        while True:
            try:
                return self._measure(level, kind, window)
            except EmptyWindowError:
                window = 2 * (window or self.measurement_interval_ms)
                if window > MAX_WINDOW_MS:
                    raise

    def _measure(self, level: float, kind: str, window_ms: int | None) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="perf-pa-") as tmp:
            argv = self.argv(level, Path(tmp) / "pa.csv", kind, window_ms=window_ms)
            return self._run(argv, self._deadline(window_ms, WINDOWS))

    def _deadline(self, window_ms: int | None, windows: int) -> float:
        """Seconds the run may take: its windows and perf_analyzer's own first one to find its
        feet, and the grace. A window of a count of requests has no length of its own: it is
        given the time to serve them at ``SLOWEST`` inferences a second."""
        if window_ms is None and self.measurement_requests:
            window_s = self.measurement_requests / SLOWEST
        else:
            window_s = (window_ms or self.measurement_interval_ms) / 1000
        return deadline_s((windows + 1) * window_s)

    def _run(self, argv: list[str], deadline: float) -> dict[str, float]:
        csv_path = Path(argv[argv.index("-f") + 1])
        try:
            proc = subprocess.run(
                host.die_with_parent(argv),
                env=self.tools.perf_analyzer_env(),
                capture_output=True,
                text=True,
                timeout=deadline,
                check=False,
            )
        except subprocess.TimeoutExpired as stopped:
            seen = _text(stopped.stdout) + _text(stopped.stderr)
            passes = parse_passes(seen)
            raise DriverTimeout(
                f"perf_analyzer did not finish within its deadline of {deadline:.0f} s and was stopped "
                f"({len(passes)} window{'s' * (len(passes) != 1)} measured by then)",
                {**spread(passes), "throughput": statistics.fmean(t for t, _ in passes)} if passes else {},
            ) from None
        output = proc.stdout + proc.stderr
        passes = parse_passes(output)
        if proc.returncode == 0 and csv_path.is_file():
            requests = _REQUESTS.search(output)
            return {**spread(passes[-WINDOWS:]), **parse_csv(csv_path)[0],
                    **({"requests": int(requests.group(1))} if requests else {})}  # fmt: skip
        if "Failed to obtain stable measurement" in output and any(t > 0 for t, _ in passes):
            return from_passes(passes)
        # A window that held no request is noise's to retry; one whose requests failed is not.
        empty = "No valid requests recorded" in output and "had error" not in output
        error = EmptyWindowError if empty else PerfAnalyzerError
        raise error(f"perf_analyzer failed: {_error_lines(output)}")


def _text(output: str | bytes | None) -> str:
    """What a stopped process had written (bytes, even with text=True, on some Pythons)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def parse_passes(output: str) -> list[tuple[float, float]]:
    """Each measured window's (throughput in infer/s, mean latency in ms), in order."""
    return [(float(m.group(2)), float(m.group(3)) / 1000.0) for m in _PASS.finditer(output)]


def spread(passes: list[tuple[float, float]]) -> dict[str, float]:
    """How many windows a row stands on, how far their throughputs spread (sample sd), and
    their mean latency (weighted by the requests each answered)."""
    throughputs = [t for t, _ in passes]
    sd = statistics.stdev(throughputs) if len(throughputs) > 1 else float("nan")
    answered = sum(throughputs)
    avg = sum(t * a for t, a in passes) / answered if answered else float("nan")
    return {"windows": len(throughputs), "throughput_sd": sd, "avg_ms": avg}


def from_passes(passes: list[tuple[float, float]]) -> dict[str, float]:
    """A row from the windows alone, when perf_analyzer gave up on them (a window in which no
    request finished): throughput and mean latency, percentiles unknown (so no SLO is met)."""
    last = passes[-WINDOWS:]
    return {
        "throughput": statistics.fmean(t for t, _ in last),
        **spread(last),
        "note": "perf_analyzer gave up on these windows (one answered nothing): percentiles unknown",
    }


def _error_lines(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return " | ".join(errors[-3:] or lines[-3:]) or "(no output)"


def parse_csv(path: Path) -> list[dict[str, float]]:
    """perf_analyzer's CSV to rows: concurrency, throughput (infer/s) and latencies in ms."""
    frame = pd.read_csv(path)
    rows = []
    for _, record in frame.iterrows():
        row = {"throughput": float(record["Inferences/Second"])}
        if "Concurrency" in record:
            row["concurrency"] = int(record["Concurrency"])
        if "Request Rate" in record:
            row["request_rate"] = float(record["Request Rate"])
        for source, name in LATENCY_COLUMNS.items():
            if source in record:
                row[name] = float(record[source]) / 1000.0
        rows.append(row)
    return rows
