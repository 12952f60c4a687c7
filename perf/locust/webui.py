"""A "perf" tab in Locust's web UI, by Locust's own means of extending it (its example
``extend_web_ui``): the tab and its table are named in ``web_ui.template_args``
(``extended_tabs``, ``extended_tables``), and the rows ride along in the statistics the page
polls every two seconds (``extended_stats``, added to ``/stats/requests`` after each
request). So the tab is live, on the page Locust serves at ``/``, with no page of perf's own.

Per request name it shows what Locust's own tabs do not: request and response bytes, the
open loop's target rate, achieved rate and missed arrivals, percentiles to three
significant figures in ms, and on a master how many workers sent the name's counts (which
it shows merged). The same rows are ``PREFIX_perf.csv`` (``perf.locust.stats``), offered for
download beside Locust's CSV files.

A blueprint adds perf's routes under ``/perf``: ``stats`` (the rows as JSON), ``csv``, and
``quit`` (POST): Locust's UI can stop a run but not end the process; ``quit`` ends it as
``--autoquit`` does, with the final summary and the CSV files written.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from typing import Any

import gevent
from flask import Blueprint, Response, jsonify, make_response, request
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner

from perf.locust import PERF_CSV_SUFFIX, TIME_UNIT
from perf.locust.stats import TALLIES, perf_rows, write_perf_csv
from perf.locust.units import three_figures

TAB = "perf"
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}
QUIT_AFTER_S = 0.2  # the quit's own answer goes out first
# Locust's page turns the keys of the structure and of the rows alike into camel case, so
# they still match; no key has a digit after an underscore (p999, not p99_9).
STRUCTURE = [
    {"key": "type", "title": "Type"},
    {"key": "name", "title": "Name"},
    {"key": "requests", "title": "# Requests"},
    {"key": "request_bytes", "title": "Request bytes (avg)"},
    {"key": "response_bytes", "title": "Response bytes (avg)"},
    {"key": "target_rate", "title": "Target rate (req/s)"},
    {"key": "achieved_rate", "title": "Achieved rate (req/s)"},
    {"key": "missed", "title": "Missed arrivals"},
    *({"key": key, "title": f"{100 * p:g}%ile ({TIME_UNIT})"} for key, p in PERCENTILES.items()),
    {"key": "max", "title": f"Max ({TIME_UNIT})"},
]
WORKERS_COLUMN = {"key": "workers", "title": "Workers"}


def finite(value: float) -> float | None:
    """JSON has no NaN (the achieved rate before two answers): the page gets an empty cell."""
    return value if math.isfinite(value) else None


def tab_rows(environment: Environment) -> list[dict[str, Any]]:
    """The tab's rows: ``PREFIX_perf.csv``'s, with Locust's percentiles and the workers."""
    distributed = isinstance(environment.runner, MasterRunner)
    rows = []
    for row in perf_rows(environment):
        key = (row["Type"], row["Name"])
        entry = environment.stats.get(row["Name"], row["Type"])
        answered = entry.num_requests - entry.num_none_requests > 0
        rows.append({
            "type": row["Type"],
            "name": row["Name"],
            "requests": row["Requests"],
            "request_bytes": row["Request Bytes Avg"],
            "response_bytes": row["Response Bytes Avg"],
            "target_rate": row["Target Rate"] or "closed loop",
            "achieved_rate": finite(row["Achieved Rate"]),
            "missed": row["Missed"],
            **{k: entry.get_response_time_percentile(p) if answered else None for k, p in PERCENTILES.items()},
            "max": three_figures(entry.max_response_time) if answered else None,
            **({"workers": len(TALLIES.workers.get(key, ()))} if distributed else {}),
        })  # fmt: skip
    return rows


def perf_blueprint(environment: Environment, guard: Callable[[Callable], Callable], prefix: str) -> Blueprint:
    """perf's routes, behind the web UI's own login where it has one (``guard``)."""
    blueprint = Blueprint(TAB, __name__, url_prefix=f"{prefix}/{TAB}")

    def stats() -> Response:
        return jsonify({"time_unit": TIME_UNIT, "rows": tab_rows(environment)})

    def csv() -> Response:
        text = io.StringIO()
        write_perf_csv(text, perf_rows(environment))
        response = make_response(text.getvalue())
        response.headers["Content-type"] = "text/csv"
        response.headers["Content-disposition"] = f"attachment;filename=locust{PERF_CSV_SUFFIX}"
        return response

    def quit_locust() -> Response:
        def end() -> None:
            environment.runner.quit()
            environment.web_ui.stop()  # Locust's main greenlet ends: it shuts down and exits

        gevent.spawn_later(QUIT_AFTER_S, end)
        return jsonify({"success": True, "message": "Locust is quitting"})

    blueprint.add_url_rule("/stats", "stats", guard(stats))
    blueprint.add_url_rule("/csv", "csv", guard(csv))
    blueprint.add_url_rule("/quit", "quit", guard(quit_locust), methods=["POST"])
    return blueprint


def _with_tab_rows(environment: Environment, prefix: str) -> Callable[[Response], Response]:
    """Adds the tab's rows to the statistics the page polls, as Locust's example does."""

    def add(response: Response) -> Response:
        if request.path != f"{prefix}/stats/requests" or response.status_code != 200:
            return response
        data = response.get_json(silent=True)
        if isinstance(data, dict):
            data["extended_stats"] = [{"key": TAB, "data": tab_rows(environment)}]
            response.set_data(json.dumps(data))
        return response

    return add


@events.init.add_listener
def _install(environment: Environment, **_: object) -> None:
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:  # headless, or a worker
        return
    prefix = (getattr(environment.parsed_options, "web_base_path", None) or "").rstrip("/")
    columns = [*STRUCTURE, *([WORKERS_COLUMN] if isinstance(environment.runner, MasterRunner) else [])]
    web_ui.template_args.update(
        extended_tabs=[{"title": TAB, "key": TAB}],
        extended_tables=[{"key": TAB, "structure": columns}],
        extended_csv_files=[{"href": f"./{TAB}/csv", "title": "Download perf CSV (bytes, open loop)"}],
    )
    web_ui.app.register_blueprint(perf_blueprint(environment, web_ui.auth_required_if_enabled, prefix))
    web_ui.app.after_request(_with_tab_rows(environment, prefix))
