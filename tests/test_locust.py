"""The locustfiles exactly as a user types them, from the repo root, against a real Triton and
a real gateway: exit codes, the CSV files, the server's own count of what it served, shapes,
the open loop and distributed runs. Nothing here imports Locust: it would monkey-patch the
test process for gevent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from perf import host
from perf.gateway.process import GatewayProcess
from perf.server import EmbeddedServer

from .conftest import REPO, perf_cli
from .test_gateway import ensemble_calls

ROOT = REPO.parent
LOCUST = str(Path(sys.executable).parent / "locust")
RUN_S = 4
LOCUSTFILES = ("grpc", "http", "gateway")


@dataclass
class Run:
    code: int
    took: float
    output: str
    prefix: Path

    def csv(self, kind: str) -> pd.DataFrame:
        return pd.read_csv(f"{self.prefix}_{kind}.csv")

    def stats(self) -> pd.Series:
        """The one request name's row of Locust's statistics."""
        frame = self.csv("stats")
        return frame[frame["Name"] != "Aggregated"].iloc[0]


def locust(locustfile: str, address: str, prefix: Path, *flags: str, users: int = 8) -> Run:
    """``locust -f locustfiles/NAME.py --headless -u N -r N -t 4s --host ADDRESS`` from the repo root."""
    run_time = [] if "--shape" in flags else ["-t", f"{RUN_S}s"]
    argv = [LOCUST, "-f", f"locustfiles/{locustfile}.py", "--headless", "-u", str(users), "-r", str(users),
            *run_time, "--host", address, "--csv", str(prefix), *flags]  # fmt: skip
    start = time.monotonic()
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return Run(out.returncode, time.monotonic() - start, out.stdout + out.stderr, prefix)


@pytest.fixture(scope="module")
def gateway(server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess.perf(server.grpc_url, tmp_path_factory.mktemp("gateway") / "gateway.log") as running:
        yield running


def address(locustfile: str, server: EmbeddedServer, request: pytest.FixtureRequest) -> str:
    if locustfile == "gateway":
        return request.getfixturevalue("gateway").url
    return server.grpc_url if locustfile == "grpc" else server.http_url


def served(server: EmbeddedServer) -> int:
    return ensemble_calls(server)[0]


@pytest.mark.parametrize("locustfile", LOCUSTFILES)
def test_each_locustfile_runs_as_written_and_counts_what_triton_served(
    locustfile: str, server: EmbeddedServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    where = address(locustfile, server, request)
    before = served(server)
    run = locust(locustfile, where, tmp_path / "run")
    assert run.code == 0, run.output[-3000:]
    assert run.took < RUN_S + 12, f"locust took {run.took:.1f} s to return after a {RUN_S} s run"
    stats = run.stats()
    assert stats["Request Count"] > 20 and stats["Failure Count"] == 0
    assert served(server) - before == stats["Request Count"], "Locust's count equals the server's own"
    # Milliseconds with three significant figures: a 20 ms median reads 2x.x, not 20.
    percentiles = stats[["50%", "66%", "75%", "80%", "90%", "95%"]].astype(float)
    assert 1 < stats["Average Response Time"] < 1000 and (percentiles % 1 != 0).any(), percentiles
    sizes = run.csv("perf").iloc[0]
    assert sizes["Requests"] == stats["Request Count"] and sizes["Time Unit"] == "ms"
    assert sizes["Request Bytes Avg"] > 10_000, "a 640x480 JPEG per request"
    assert stats["Average Content Size"] > 0
    assert sizes["Response Bytes Avg"] == pytest.approx(stats["Average Content Size"], abs=0.1)


@pytest.mark.parametrize("locustfile", LOCUSTFILES)
def test_a_stopped_server_is_failures_and_a_non_zero_exit_without_hanging(locustfile: str, tmp_path: Path) -> None:
    (port,) = host.free_ports(1)
    run = locust(locustfile, f"127.0.0.1:{port}", tmp_path / "down", users=2)
    assert run.code != 0, run.output[-3000:]
    assert run.took < RUN_S + 12
    stats = run.stats()
    assert stats["Failure Count"] > 0 and stats["Request Count"] == stats["Failure Count"]
    errors = " ".join(run.csv("failures")["Error"])
    assert "unavailable" in errors.lower() or "refused" in errors.lower(), errors


def test_failures_carry_tritons_own_error_text(server: EmbeddedServer, tmp_path: Path) -> None:
    for locustfile, where in (("grpc", server.grpc_url), ("http", server.http_url)):
        run = locust(locustfile, where, tmp_path / locustfile, "--model", "no_such_model", users=1)
        assert run.code != 0
        assert "Request for unknown model: 'no_such_model' is not found" in run.csv("failures")["Error"][0]


def test_the_step_shape_holds_each_user_count_then_ends_by_itself(server: EmbeddedServer, tmp_path: Path) -> None:
    run = locust("grpc", server.grpc_url, tmp_path / "steps", "--shape", "steps", "--steps", "1,3", "--hold", "2s")
    assert run.code == 0, run.output[-3000:]
    assert run.took < 4 + 12
    history = run.csv("stats_history")
    counts = history.loc[history["Name"] == "Aggregated", "User Count"].tolist()
    running = [c for c in counts if c > 0]
    # One history row a second: about two seconds of 1 user, then about two of 3 users.
    assert running[0] == 1 and running[-1] == 3 and running == sorted(running), counts
    assert 1 <= running.count(1) <= 3 and 1 <= running.count(3) <= 3, counts


def test_the_open_loop_sends_at_the_target_rate_and_records_it(server: EmbeddedServer, tmp_path: Path) -> None:
    before = served(server)
    run = locust("grpc", server.grpc_url, tmp_path / "open", "--arrival-rate", "40", users=2)
    assert run.code == 0, run.output[-3000:]
    perf = run.csv("perf").iloc[0]
    assert perf["Target Rate"] == 40 and perf["Missed"] == 0
    assert perf["Achieved Rate"] == pytest.approx(40, rel=0.1)
    assert served(server) - before == run.stats()["Request Count"] == perf["Requests"]


def test_a_master_with_two_workers_counts_what_triton_served_at_the_open_loops_rate(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    (port,) = host.free_ports(1)
    before = served(server)
    worker = [LOCUST, "-f", "locustfiles/grpc.py", "--worker", "--master-port", str(port)]
    logs = [tmp_path / f"worker{number}.log" for number in range(2)]
    workers = [subprocess.Popen(worker, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    try:
        run = locust("grpc", server.grpc_url, tmp_path / "master", "--master", "--expect-workers", "2",
                     "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--arrival-rate", "40",
                     users=4)  # fmt: skip
        assert run.code == 0, run.output[-3000:]
        for worker, log in zip(workers, logs, strict=True):
            try:
                code = worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                code = None
            assert code == 0, f"a worker, 20 s after its master ended (exit {code}):\n{log.read_text()[-3000:]}"
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    stats = run.stats()
    assert stats["Request Count"] > 20 and served(server) - before == stats["Request Count"]
    perf = run.csv("perf").iloc[0]
    assert perf["Requests"] == stats["Request Count"], "workers' tallies reach the master"
    assert perf["Achieved Rate"] == pytest.approx(40, rel=0.1), "the rate is shared by all users of all workers"


def test_processes_share_the_load_of_one_command(server: EmbeddedServer, tmp_path: Path) -> None:
    before = served(server)
    run = locust("http", server.http_url, tmp_path / "procs", "--processes", "2", users=4)
    assert run.code == 0, run.output[-3000:]
    stats = run.stats()
    assert stats["Request Count"] > 20 and served(server) - before == stats["Request Count"]


def test_a_sweep_driven_by_locust_writes_the_perf_analyzer_drivers_rows(tmp_path: Path) -> None:
    run = tmp_path / "sweep"
    out = perf_cli("sweep", "--driver", "locust", "--model", "ensemble_model", "--no-baseline",
                   "--param", "classifier.instance_count", "--values", "1", "--concurrency", "1", "4",
                   "--measurement-interval", "1000", "--out", str(run), timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    table = pd.read_csv(run / "results.csv")
    assert table["status"].tolist() == ["ok", "ok"] and table["load_level"].tolist() == [1, 4]
    assert (table["throughput"] > 10).all() and (table["p99_ms"] >= table["p50_ms"]).all()
    assert table["throughput"][1] > table["throughput"][0], "four users get more done than one"
    assert table["client_send_ms"].isna().all(), "perf_analyzer's own split stays empty"
    assert (table["classifier.requests"] > 0).all(), "the server's side is observed as with perf_analyzer"
    assert json.loads((run / "plan.json").read_text())["load"]["driver"] == "locust"
