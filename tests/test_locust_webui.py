"""Locust's web UI as a user sees it: the design card's command typed as is (web UI mode, from
the repository root), against a real Triton, the page rendered in real Chromium. A swarm is
started and stopped through the UI's own endpoints and the process is ended through perf's;
the numbers on the page, in the UI's CSV and on the console agree, in milliseconds with their
decimals. The listening socket's own address is read, never probed: nothing here connects to
an address other than loopback. Nothing here imports Locust (it would patch this process for
gevent)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psutil
import pytest
from PIL import Image

from perf import host
from perf.server import EmbeddedServer

from .conftest import processes_mentioning
from .test_locust import LOCUST, ROOT

LOOPBACK = "127.0.0.1"
MODEL = "ensemble_model"
USERS = 4
START_S = 60  # Locust imports tritonclient, torch-free but not quick on two busy cores


@dataclass
class WebUi:
    """A running ``locust -f locustfiles/grpc.py`` in web UI mode, and how to reach it."""

    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def listening(self) -> list[str]:
        """The addresses the process listens on at its web port, from its own sockets."""
        sockets = psutil.Process(self.proc.pid).net_connections(kind="tcp")
        return [s.laddr.ip for s in sockets if s.status == psutil.CONN_LISTEN and s.laddr.port == self.port]

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return response.read()

    def post(self, path: str, form: dict[str, Any] | None = None) -> dict[str, Any]:
        data = urlencode(form or {}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{self.url}{path}", data=data), timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return json.loads(self.get("/stats/requests"))

    def entry(self) -> dict[str, Any]:
        """The model's row of the statistics the page shows."""
        return next((row for row in self.stats()["stats"] if row["name"] == MODEL), {"num_requests": 0})

    def wait_for(self, what: str, ready: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"locust exited while waiting for {what}: {self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s: {self.output()[-3000:]}"
            time.sleep(0.5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def web_ui(tmp_path: Path, *flags: str) -> Iterator[WebUi]:
    """``locust -f locustfiles/grpc.py`` as typed, from the repository root, on a free web port;
    killed at exit if the test did not end it (with any workers it forked)."""
    (port,) = host.free_ports(1)
    log = tmp_path / "locust.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            host.die_with_parent([LOCUST, "-f", "locustfiles/grpc.py", "--web-port", str(port), *flags]),
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    running = WebUi(proc, port, log)
    try:
        running.wait_for("listening web port", running.listening, timeout=START_S)
        yield running
    finally:
        for leftover in processes_mentioning(f"--web-port {port}"):
            leftover.kill()
        proc.wait(timeout=30)


def test_the_web_ui_binds_loopback_by_default_and_quits_through_the_ui(tmp_path: Path) -> None:
    with web_ui(tmp_path) as running:
        assert running.listening() == [LOOPBACK], "the repository's locust.conf binds the web UI to loopback"
        assert f"Starting web interface at http://{LOOPBACK}:{running.port}" in running.output()
        assert running.post("/perf/quit")["success"]
        assert running.proc.wait(timeout=30) == 0, running.output()[-3000:]
    assert processes_mentioning(f"--web-port {running.port}") == []


def cells(page: Any) -> dict[str, str]:
    """The model's row of the table on the page's open tab, by column title."""
    row = page.locator("tbody tr").filter(has_text=MODEL).first
    row.wait_for(timeout=20_000)
    titles = page.locator("thead th").all_inner_texts()
    return dict(zip(titles, row.locator("td").all_inner_texts(), strict=True))


def loopback_only(page: Any, elsewhere: list[str]) -> None:
    """Let the page reach loopback only; note any other address it tries."""

    def route(request_route: Any) -> None:
        if urlsplit(request_route.request.url).hostname == LOOPBACK:
            request_route.continue_()
        else:
            elsewhere.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)


def console_times(output: str) -> list[str]:
    """The time columns (Avg, Min, Max, Med) of the model's row in the console's final summary
    (its statistics table; the percentile table's rows have no ``|``)."""
    rows = [line for line in output.splitlines() if line.startswith("grpc") and f" {MODEL} " in line and "|" in line]
    return rows[-1].split("|")[1].split() if rows else []


def test_the_design_cards_command_in_the_web_ui(server: EmbeddedServer, browser: Any, tmp_path: Path) -> None:
    with web_ui(tmp_path) as running:
        started = running.post("/swarm", {"user_count": USERS, "spawn_rate": USERS, "host": server.grpc_url})
        assert started["success"], started
        running.wait_for("30 requests", lambda: running.entry()["num_requests"] >= 30)

        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        elsewhere: list[str] = []
        loopback_only(page, elsewhere)
        page.goto(running.url)
        stats = cells(page)
        median = float(stats["Median (ms)"])
        assert 1 <= median <= 1000, f"the ensemble's median is {median} ms as labelled: {stats}"
        times = [stats[t] for t in ("Median (ms)", "95%ile (ms)", "99%ile (ms)", "Average (ms)")]
        assert any("." in t for t in times), f"times keep their decimals: {times}"
        shot = tmp_path / "locust-statistics.png"
        page.screenshot(path=str(shot), full_page=True)
        with Image.open(shot) as image:
            assert image.format == "PNG" and image.width >= 1600

        page.get_by_role("tab", name="perf").click()
        perf = cells(page)
        page.wait_for_timeout(500)  # the tab's underline slides over: the artifact shows where it lands
        page.screenshot(path=str(tmp_path / "locust-perf-tab.png"), full_page=True)
        assert float(perf["Request bytes (avg)"]) > 10_000, f"a 640x480 JPEG per request: {perf}"
        assert float(perf["Response bytes (avg)"]) > 0, perf
        assert perf["Target rate (req/s)"] == "closed loop" and perf["Missed arrivals"] == "0", perf
        assert 1 <= float(perf["50%ile (ms)"]) <= 1000 and float(perf["Achieved rate (req/s)"]) > 0, perf
        assert elsewhere == [], "the page reached for addresses other than loopback"
        page.close()

        # Stopped, the numbers hold still: the page's JSON and the UI's CSV downloads agree.
        assert running.post("/stop")["success"]
        running.wait_for("stopped state", lambda: running.stats()["state"] == "stopped", timeout=30)
        shown = running.entry()
        requests_csv = list(csv.DictReader(io.StringIO(running.get("/stats/requests/csv").decode())))
        row = next(r for r in requests_csv if r["Name"] == MODEL)
        assert float(row["Median Response Time"]) == shown["median_response_time"]
        assert float(row["95%"]) == shown["response_time_percentile_0.95"]
        assert any(float(row[p]) % 1 for p in ("50%", "66%", "75%", "80%", "90%", "95%")), f"CSV keeps decimals: {row}"
        perf_csv = next(csv.DictReader(io.StringIO(running.get("/perf/csv").decode())))
        perf_rows = json.loads(running.get("/perf/stats"))["rows"]
        assert perf_csv["Time Unit"] == "ms" and int(perf_csv["Requests"]) == shown["num_requests"]
        assert float(perf_csv["Request Bytes Avg"]) == perf_rows[0]["request_bytes"]
        assert "extended_stats" in running.stats(), "the tab's rows ride with the statistics the page polls"

        assert running.post("/perf/quit")["success"]
        assert running.proc.wait(timeout=30) == 0, running.output()[-3000:]
        output = running.output()
    assert processes_mentioning(f"--web-port {running.port}") == [], "no Locust process is left"
    assert " Med ms" in output and "Response time percentiles in ms" in output, output[-3000:]
    average, _, _, med = console_times(output)
    assert float(med) == pytest.approx(shown["median_response_time"], rel=0.005), "the console agrees"
    assert float(average) == pytest.approx(shown["avg_response_time"], rel=0.005)


def test_a_master_shows_its_workers_counts_merged(server: EmbeddedServer, tmp_path: Path) -> None:
    with web_ui(tmp_path, "--processes", "2") as running:
        running.wait_for("two workers", lambda: json.loads(running.get("/worker-count"))["worker_count"] == 2)
        started = running.post("/swarm", {"user_count": USERS, "spawn_rate": USERS, "host": server.grpc_url})
        assert started["success"], started
        running.wait_for("30 requests", lambda: running.entry()["num_requests"] >= 30)
        assert running.post("/stop")["success"]
        running.wait_for("stopped state", lambda: running.stats()["state"] == "stopped", timeout=30)

        def merged() -> bool:  # workers report every few seconds: wait for the last reports
            row = json.loads(running.get("/perf/stats"))["rows"][0]
            return row["workers"] == 2 and row["requests"] == running.entry()["num_requests"]

        running.wait_for("the workers' last reports", merged, timeout=30)
        row = json.loads(running.get("/perf/stats"))["rows"][0]
        assert row["request_bytes"] > 10_000 and row["achieved_rate"] > 0, row
        assert running.post("/perf/quit")["success"]
        assert running.proc.wait(timeout=30) == 0, running.output()[-3000:]
    deadline = time.monotonic() + 30
    while processes_mentioning(f"--web-port {running.port}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(f"--web-port {running.port}") == [], "the forked workers ended with their master"
