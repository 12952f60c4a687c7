"""Load with Locust: one level per headless run of ``locustfiles/grpc.py``, the same user a
person runs by hand. A concurrency is that many users in a closed loop; a request rate is the
open loop at that arrival rate. Locust's CSV (milliseconds with decimals, see
perf.locust.units) becomes a row named as perf_analyzer's are; what only perf_analyzer measures
(its server-side split) stays empty."""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from perf import host
from perf.drivers import DriverError, DriverTimeout, deadline_s
from perf.locust import PERF_CSV_SUFFIX, TIME_UNIT
from perf.tools import project_root

PERCENTILES = {"50%": "p50_ms", "90%": "p90_ms", "95%": "p95_ms", "99%": "p99_ms"}
# A run is three measurement windows long, perf_analyzer's least for a stable result.
WINDOWS = 3


LOCUST_START_S = 30.0  # Locust's own start and stop (gevent, its runner, the users' set-up) on a busy machine


class LocustError(DriverError):
    """Locust failed, or requests did: the message carries their errors."""


def locustfile(protocol: str = "grpc") -> Path:
    """The repository's ``locustfiles/grpc.py`` or ``http.py``."""
    root = project_root()
    if root is None:
        raise LocustError("perf is not running from its checkout: locustfiles/ is not at hand")
    return root / "locustfiles" / f"{protocol}.py"


@dataclass
class Locust:
    """How to measure: the same settings apply to every level it runs."""

    url: str  # Triton's gRPC HOST:PORT (its HTTP URL for the http protocol)
    model: str
    images: Path | None = None  # a folder of JPEG/PNG; None: generated images
    images_per_request: int = 1
    window_ms: int = 2000
    protocol: str = "grpc"  # or "http": the locustfile that runs
    input_data: Path | None = None  # the model's own inputs (perf_analyzer's JSON), instead of images

    def argv(self, level: float, kind: str, csv_prefix: Path, run_s: float) -> list[str]:
        # Users start within a tenth of a second: the level is measured, not the way up to it.
        users = ["-u", "1", "-r", "10", "--arrival-rate", f"{level:g}"] if kind == "request_rate" else \
            ["-u", f"{level:g}", "-r", f"{10 * level:g}"]  # fmt: skip
        return [
            str(Path(sys.executable).parent / "locust"), "-f", str(locustfile(self.protocol)), "--headless", *users,
            "-t", f"{math.ceil(run_s)}s", "--host", self.url, "--csv", str(csv_prefix), "--only-summary",
            "--model", self.model, "--images-per-request", str(self.images_per_request),
            *(["--images", str(self.images)] if self.images else []),
            *(["--input-data", str(self.input_data)] if self.input_data else []),
        ]  # fmt: skip

    def warm_up(self, level: float, kind: str = "concurrency") -> None:
        with contextlib.suppress(LocustError):
            self._run(level, kind, run_s=1)

    def run(self, level: float, kind: str = "concurrency") -> dict[str, float]:
        return self._run(level, kind, run_s=max(1.0, WINDOWS * self.window_ms / 1000))

    def _run(self, level: float, kind: str, run_s: float) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="perf-locust-") as tmp:
            prefix = Path(tmp) / "run"
            argv = self.argv(level, kind, prefix, run_s)
            deadline = deadline_s(run_s, LOCUST_START_S)
            try:
                proc = subprocess.run(host.die_with_parent(argv), cwd=locustfile(self.protocol).parent.parent,
                                      capture_output=True, text=True, timeout=deadline, check=False)  # fmt: skip
            except subprocess.TimeoutExpired:
                raise DriverTimeout(f"locust did not finish within its deadline of {deadline:.0f} s and was "
                                    "stopped") from None  # fmt: skip
            stats_path = Path(f"{prefix}_stats.csv")
            if not stats_path.is_file():
                raise LocustError(f"locust failed: {_last_lines(proc.stdout + proc.stderr)}")
            failures = pd.read_csv(f"{prefix}_failures.csv")
            if len(failures) or proc.returncode != 0:
                errors = " | ".join(failures["Error"].astype(str).head(3)) or _last_lines(proc.stderr)
                raise LocustError(f"locust: requests failed: {errors}")
            return self.row(stats_path, Path(f"{prefix}{PERF_CSV_SUFFIX}"))

    def row(self, stats_path: Path, perf_path: Path) -> dict[str, float]:
        """Locust's statistics of the model's requests to a row: inferences per second, ms. The
        throughput is perf's achieved rate, first answer to last: Locust's own Requests/s also
        counts the users' start."""
        stats = pd.read_csv(stats_path).set_index("Name").loc[self.model]
        if not stats["Request Count"]:
            raise LocustError("locust sent no request")
        perf = pd.read_csv(perf_path).set_index("Name").loc[self.model]
        if perf["Time Unit"] != TIME_UNIT:  # the row is in ms: say so rather than scale by guess
            raise LocustError(f"locust's times are in {perf['Time Unit']}, the driver reads {TIME_UNIT}")
        return {
            "throughput": float(perf["Achieved Rate"]) * self.images_per_request,
            **{name: float(stats[column]) for column, name in PERCENTILES.items()},
            "avg_ms": float(stats["Average Response Time"]),
        }


def _last_lines(output: str, count: int = 3) -> str:
    return " | ".join([line.strip() for line in output.splitlines() if line.strip()][-count:]) or "(no output)"
