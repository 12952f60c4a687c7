"""What perf adds to Locust's statistics, installed when Locust starts (``events.init``).

- Response times are reported in microseconds. Locust keeps a histogram of whole response
  times (CSV percentiles are written as integers), so in milliseconds a 4.7 ms request and a
  5.3 ms one look alike; in microseconds they do not. Its bucketing hook
  ``locust.stats.bucket_response_time`` is replaced to keep three significant figures (error
  at most 0.5 %, about 900 histogram keys per decade) instead of two. Every number Locust
  shows or writes for response times (console, CSV, web UI) is then in microseconds.
- Request sizes and the open loop's arrivals, which Locust does not count, are tallied per
  request name, merged from workers in distributed runs, and written to ``PREFIX_perf.csv``
  beside Locust's own CSV files.
- A run ends cleanly: requests in flight finish (the stop timeout defaults to the request
  timeout) and the CSV files get their last second.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import gevent
import locust.stats
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from perf.locust import PERF_CSV_SUFFIX

TIME_UNIT = "us"
PER_SECOND = 1_000_000  # response-time units per second
PERF_COLUMNS = ["Type", "Name", "Requests", "Request Bytes Avg", "Response Bytes Avg",
                "Target Rate", "Achieved Rate", "Missed", "Time Unit"]  # fmt: skip

logger = logging.getLogger(__name__)


def bucket_three_figures(response_time: float) -> int:
    """A response time (µs) rounded to three significant figures: 1234 -> 1230, 98765 -> 98800."""
    if response_time < 1000:
        return round(response_time)
    return int(round(response_time, 2 - int(math.log10(response_time))))


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
    """This process's tallies by (request type, name)."""

    def __init__(self) -> None:
        self.by_name: dict[tuple[str, str], Tally] = {}

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

    def add(self, data: list[dict[str, Any]]) -> None:
        names = {f.name for f in fields(Tally)}
        for item in data:
            self.of(item["type"], item["name"]).merge(Tally(**{k: v for k, v in item.items() if k in names}))


TALLIES = Tallies()


@events.init.add_listener
def _install(environment: Environment, **_: object) -> None:
    if not hasattr(locust.stats, "bucket_response_time"):  # the hook replaced an inline rounding in 2.4x
        raise RuntimeError(f"perf needs a Locust with locust.stats.bucket_response_time, not {locust.__version__}")
    locust.stats.bucket_response_time = bucket_three_figures
    options = environment.parsed_options
    # Without a stop timeout Locust kills users mid-request at the end of a run: the server
    # then counts requests Locust never records. Let them finish (bounded by the request
    # timeout) unless the user chose a --stop-timeout.
    if not environment.stop_timeout and options is not None:
        environment.stop_timeout = options.request_timeout
    if not isinstance(environment.runner, WorkerRunner):
        logger.info("perf: response times are in microseconds (%s)", TIME_UNIT)
        environment.events.quit.add_listener(functools.partial(_write_perf_csv, environment))


@events.request.add_listener
def _count_request_bytes(request_type: str, name: str, context: dict[str, Any] | None = None, **_: object) -> None:
    TALLIES.answered(request_type, name, (context or {}).get("request_bytes", 0))


@events.test_start.add_listener
def _start_afresh(**_: object) -> None:
    TALLIES.by_name = {}


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any]) -> None:
    data["perf"] = TALLIES.take()


@events.worker_report.add_listener
def _merge(client_id: str, data: dict[str, Any]) -> None:
    TALLIES.add(data.get("perf", []))


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
            writer = csv.DictWriter(file, PERF_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


def perf_rows(environment: Environment) -> list[dict[str, Any]]:
    options = environment.parsed_options
    target = float(getattr(options, "arrival_rate", 0) or 0)
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
