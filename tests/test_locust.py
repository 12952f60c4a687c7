"""`locust -f locustfiles/grpc.py` exactly as a user types it, from the repo root, against a
real Triton: exit codes, the CSV, and the server's own count of what it served."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from perf import host
from perf.server import EmbeddedServer

from .conftest import REPO

ROOT = REPO.parent
LOCUST = str(Path(sys.executable).parent / "locust")


def locust(host_port: str, csv_prefix: Path, users: int = 8, run_time: str = "10s") -> tuple[int, float, str]:
    argv = [LOCUST, "-f", "locustfiles/grpc.py", "--headless", "-u", str(users), "-r", str(users),
            "-t", run_time, "--host", host_port, "--csv", str(csv_prefix)]  # fmt: skip
    start = time.monotonic()
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return out.returncode, time.monotonic() - start, out.stdout + out.stderr


def served(server: EmbeddedServer) -> int:
    (stats,) = server.statistics("ensemble_model")
    return int(stats["inference_stats"]["success"].get("count", 0))


def test_the_grpc_locustfile_runs_as_written_and_counts_what_triton_served(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    before = served(server)
    code, took, output = locust(server.grpc_url, tmp_path / "run")
    assert code == 0, output[-3000:]
    assert took < 10 + 15, f"locust took {took:.1f} s to return after a 10 s run"
    stats = pd.read_csv(tmp_path / "run_stats.csv").set_index("Name")
    requests = int(stats.loc["ensemble_model", "Request Count"])
    assert requests > 50 and int(stats.loc["ensemble_model", "Failure Count"]) == 0
    assert served(server) - before == requests, "Locust's count equals the server's own"


def test_a_stopped_server_is_failures_and_a_non_zero_exit_without_hanging(tmp_path: Path) -> None:
    (port,) = host.free_ports(1)
    code, took, output = locust(f"127.0.0.1:{port}", tmp_path / "down", users=2, run_time="3s")
    assert code != 0, output[-3000:]
    assert took < 3 + 15
    stats = pd.read_csv(tmp_path / "down_stats.csv").set_index("Name")
    assert int(stats.loc["ensemble_model", "Failure Count"]) > 0
    assert int(stats.loc["ensemble_model", "Request Count"]) == int(stats.loc["ensemble_model", "Failure Count"])
