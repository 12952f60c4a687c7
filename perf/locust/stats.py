"""What perf adds to Locust's statistics, installed when Locust starts (``events.init``).

- Request sizes and the open loop's arrivals, which Locust does not count, are tallied per
  request name, merged from workers in distributed runs (with the workers that sent them),
  and written to ``PREFIX_perf.csv`` beside Locust's own CSV files; the web UI's perf tab
  (``perf.locust.webui``) shows the same rows live.
- A run ends cleanly: requests in flight finish (the stop timeout defaults to the request
  timeout) and the CSV files get their last second.

Response times are milliseconds with their decimals (``perf.locust.units``).
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from typing import IO, Any

import gevent
import locust.stats
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from perf.locust import PERF_CSV_SUFFIX, TIME_UNIT

PERF_COLUMNS = ["Type", "Name", "Requests", "Request Bytes Avg", "Response Bytes Avg",
                "Target Rate", "Achieved Rate", "Missed", "Time Unit"]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass
class Tally:
    """What one request name sent, beyond Locust's own statistics."""

    requests: int = 0
    request_bytes: int = 0
    arrivals: int = 0  # open loop: requests due by the schedule
    missed: int = 0  # open loop: arrivals not sent, the user's in-flight limit reached
    first: float = math.inf
    last: float = -math.inf

    def merge(self, other: Tally) -> None:
        for field in ("requests", "request_bytes", "arrivals", "missed"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)

    def rate(self) -> float:
        """Requests answered per second, from the first answer to the last."""
        span = self.last - self.first
        return (self.requests - 1) / span if self.requests > 1 and span > 0 else math.nan


class Tallies:
    """This process's tallies by (request type, name); on a master, also which workers sent
    each name's (kept apart from the tallies, which workers send as plain data)."""

    def __init__(self) -> None:
        self.by_name: dict[tuple[str, str], Tally] = {}
        self.workers: dict[tuple[str, str], set[str]] = {}

    def clear(self) -> None:
        self.by_name, self.workers = {}, {}

    def of(self, request_type: str, name: str) -> Tally:
        return self.by_name.setdefault((request_type, name), Tally())

    def answered(self, request_type: str, name: str, request_bytes: int) -> None:
        tally = self.of(request_type, name)
        now = time.time()
        tally.requests += 1
        tally.request_bytes += request_bytes
        tally.first = min(tally.first, now)
        tally.last = max(tally.last, now)

    def arrival(self, request_type: str, name: str, missed: bool) -> None:
        tally = self.of(request_type, name)
        tally.arrivals += 1
        tally.missed += missed

    def take(self) -> list[dict[str, Any]]:
        """The tallies as plain data for a worker's report; this process starts again from zero."""
        data = [{"type": t, "name": n, **asdict(tally)} for (t, n), tally in self.by_name.items()]
        self.by_name = {}
        return data

    def add(self, data: list[dict[str, Any]], worker: str) -> None:
        """A worker's report, merged into this (the master's) tallies."""
        names = {f.name for f in fields(Tally)}
        for item in data:
            self.of(item["type"], item["name"]).merge(Tally(**{k: v for k, v in item.items() if k in names}))
            self.workers.setdefault((item["type"], item["name"]), set()).add(worker)


TALLIES = Tallies()


@events.init.add_listener
def _install(environment: Environment, **_: object) -> None:
    options = environment.parsed_options
    # Without a stop timeout Locust kills users mid-request at the end of a run: the server
    # then counts requests Locust never records. Let them finish (bounded by the request
    # timeout) unless the user chose a --stop-timeout.
    if not environment.stop_timeout and options is not None:
        environment.stop_timeout = options.request_timeout
    if not isinstance(environment.runner, WorkerRunner):
        logger.info("perf: response times in %s, to three significant figures", TIME_UNIT)
        environment.events.quit.add_listener(functools.partial(_write_perf_csv, environment))


@events.request.add_listener
def _count_request_bytes(request_type: str, name: str, context: dict[str, Any] | None = None, **_: object) -> None:
    TALLIES.answered(request_type, name, (context or {}).get("request_bytes", 0))


@events.test_start.add_listener
def _start_afresh(**_: object) -> None:
    TALLIES.clear()


@events.reset_stats.add_listener
def _reset_with_locust(**_: object) -> None:
    """The web UI's "Reset stats" clears Locust's statistics: perf's go with them."""
    TALLIES.clear()


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any]) -> None:
    data["perf"] = TALLIES.take()


@events.worker_report.add_listener
def _merge(client_id: str, data: dict[str, Any]) -> None:
    TALLIES.add(data.get("perf", []), worker=client_id)


@events.test_stop.add_listener
def _let_the_csv_catch_up(environment: Environment, **_: object) -> None:
    """Locust rewrites its --csv files once a second and not again at exit, so the last second
    would be missing: give its writer one more turn, now that the users have stopped."""
    if not isinstance(environment.runner, WorkerRunner) and getattr(environment.parsed_options, "csv_prefix", None):
        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)


def _write_perf_csv(environment: Environment, **_: object) -> None:
    """At exit, when workers have sent their last reports (they send them on the master's
    quit, after the test has stopped)."""
    rows = perf_rows(environment)
    for row in rows:
        if row["Target Rate"]:
            logger.info("perf: %s open loop: target %.1f/s, achieved %.1f/s, missed %d",
                        row["Name"], row["Target Rate"], row["Achieved Rate"], row["Missed"])  # fmt: skip
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        with open(f"{prefix}{PERF_CSV_SUFFIX}", "w", newline="") as file:
            write_perf_csv(file, rows)


def write_perf_csv(file: IO[str], rows: list[dict[str, Any]]) -> None:
    """``PREFIX_perf.csv``'s content; the web UI's download is the same."""
    writer = csv.DictWriter(file, PERF_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def target_rate(environment: Environment) -> float:
    """The open loop's arrivals per second in all (0: closed loop), as last set (the web UI's
    form can change it between runs)."""
    return float(getattr(environment.parsed_options, "arrival_rate", 0) or 0)


def perf_rows(environment: Environment) -> list[dict[str, Any]]:
    """One row of ``PERF_COLUMNS`` per request name, sizes from this process's (merged) tallies."""
    target = target_rate(environment)
    rows = []
    for (request_type, name), tally in sorted(TALLIES.by_name.items()):
        entry = environment.stats.get(name, request_type)
        rows.append({
            "Type": request_type,
            "Name": name,
            "Requests": tally.requests,
            "Request Bytes Avg": round(tally.request_bytes / tally.requests, 1) if tally.requests else 0,
            "Response Bytes Avg": round(entry.avg_content_length, 1),
            "Target Rate": target,
            "Achieved Rate": round(tally.rate(), 3),
            "Missed": tally.missed,
            "Time Unit": TIME_UNIT,
        })  # fmt: skip
    return rows
