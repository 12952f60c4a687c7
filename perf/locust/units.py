"""Response times in milliseconds with their decimals, wherever Locust shows or writes them.

Locust's unit is the millisecond: its web UI heads columns "Median (ms)" and charts "Response
Times (ms)", and nothing there can be relabelled. So perf reports each request's time to
Locust in milliseconds, as a float (4.732, not 4 or 4732), and makes every place that would
drop the decimals keep them, to three significant figures (error at most 0.5 %, never finer
than a microsecond):

- the histogram: Locust's documented hook ``locust.stats.bucket_response_time`` keeps three
  figures as float keys (4.732 -> 4.73, 27.26 -> 27.3, 1234 -> 1230) instead of rounding
  everything under 100 ms to whole milliseconds;
- the CSV files: Locust writes percentiles through ``int()``; they are written as kept;
- the console: Locust formats times with ``%d``; they are printed with their figures, under
  headers that say "ms";
- the web UI: Locust rounds min and max to whole milliseconds; they keep their figures.

Installed in every Locust process when it starts (``events.init``), workers included: the
histogram is filled where requests are measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import locust.stats
from locust import events
from locust.env import Environment
from locust.stats import StatsCSV, StatsEntry

from perf.locust import TIME_UNIT

PER_SECOND = 1000.0  # response-time units (ms) per second
FIGURES = 3
MOST_DECIMALS = 3  # a microsecond: keeps the histogram's keys bounded (about 900 a decade)
# What perf replaces in Locust, checked before anything is replaced: a Locust that moved one
# of them would otherwise show whole milliseconds again without a word.
PATCHED = (
    (locust.stats, "bucket_response_time"),
    (locust.stats, "get_stats_summary"),
    (locust.stats, "get_percentile_stats_summary"),
    (StatsEntry, "to_string"),
    (StatsEntry, "percentile"),
    (StatsEntry, "to_dict"),
    (StatsCSV, "_percentile_fields"),
)
TIME_HEADERS = ("Avg", "Min", "Max", "Med")  # the console summary's time columns, 7 wide


def decimals(ms: float) -> int:
    """Decimal places that keep three significant figures of ``ms``, at most a microsecond's."""
    if ms <= 0 or not math.isfinite(ms):
        return 0
    return min(MOST_DECIMALS, FIGURES - 1 - math.floor(math.log10(ms)))


def three_figures(ms: float) -> float:
    """``ms`` to three significant figures: 4.732 -> 4.73, 0.04567 -> 0.046, 98765 -> 98800."""
    ms = float(ms or 0)
    rounded = round(ms, decimals(ms))
    # 999.96 rounds up to 1000.0, which has one figure fewer than its decimals allowed: fine.
    return float(rounded)


def text(ms: float | None) -> str:
    """``ms`` as the console prints it: three figures, no exponent (``27.2``, ``0.457``, ``1230``)."""
    value = three_figures(ms or 0)
    return f"{value:.{max(0, decimals(value))}f}"


def _row(self: StatsEntry, current: bool = True) -> str:
    """Locust's console row (``StatsEntry.to_string``) with times printed as ``text`` does."""
    rps, fails = (self.current_rps, self.current_fail_per_sec) if current else (self.total_rps, self.total_fail_per_sec)
    name_width = (locust.stats.STATS_NAME_WIDTH - locust.stats.STATS_TYPE_WIDTH) + 4
    template = f"%-{locust.stats.STATS_TYPE_WIDTH}s %-{name_width}s %7d %12s |%7s %7s %7s%7s | %7.2f %11.2f"
    return template % (
        (self.method and self.method + " ") or "",
        self.name,
        self.num_requests,
        f"{self.num_failures}({self.fail_ratio * 100:.2f}%)",
        text(self.avg_response_time),
        text(self.min_response_time),
        text(self.max_response_time),
        text(self.median_response_time),
        rps or 0,
        fails or 0,
    )


def _percentile_row(self: StatsEntry) -> str:
    """Locust's console percentile row (``StatsEntry.percentile``) with the figures kept."""
    if not self.num_requests:
        raise ValueError("Can't calculate percentile on url with no successful requests")
    columns = " ".join(["%6s"] * len(locust.stats.PERCENTILES_TO_REPORT))
    template = f"%-{locust.stats.STATS_TYPE_WIDTH}s %-{locust.stats.STATS_NAME_WIDTH}s %8s {columns}"
    times = [text(self.get_response_time_percentile(p)) for p in locust.stats.PERCENTILES_TO_REPORT]
    return template % (self.method or "", self.name, *times, str(self.num_requests))


def _labelled(summary: Callable[..., list[str]], label: Callable[[str], str]) -> Callable[..., list[str]]:
    """A console summary whose first line (its header or title) says the unit."""

    def labelled(*args: Any, **kwargs: Any) -> list[str]:
        lines = summary(*args, **kwargs)
        return [label(lines[0]), *lines[1:]] if lines else lines

    return labelled


def _stats_header(line: str) -> str:
    for header in TIME_HEADERS:  # right-aligned in 7 characters: "    Avg" -> " Avg ms"
        line = line.replace(f"{header:>7}", f"{header + ' ' + TIME_UNIT:>7}", 1)
    return line


def _percentiles_title(line: str) -> str:
    return line.replace("percentiles", f"percentiles in {TIME_UNIT}", 1)


def _csv_percentiles(self: StatsCSV, entry: StatsEntry, use_current: bool = False) -> list[str] | list[float]:
    """Locust's CSV percentiles (``StatsCSV._percentile_fields``) without its ``int()``."""
    if not entry.num_requests:
        return self.percentiles_na
    if use_current and entry.use_response_times_cache:
        return [entry.get_current_response_time_percentile(p) or 0 for p in self.percentiles_to_report]
    return [entry.get_response_time_percentile(p) or 0 for p in self.percentiles_to_report]


def _with_extremes(to_dict: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``StatsEntry.to_dict`` (what the web UI shows) with min and max at three figures, not whole ms."""

    def with_extremes(self: StatsEntry, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data = to_dict(self, *args, **kwargs)
        data["min_response_time"] = three_figures(self.min_response_time or 0)
        data["max_response_time"] = three_figures(self.max_response_time)
        return data

    return with_extremes


def install() -> None:
    """Make Locust keep milliseconds' decimals in this process; once, however often called."""
    if locust.stats.bucket_response_time is three_figures:
        return
    missing = [f"{owner.__name__}.{name}" for owner, name in PATCHED if not hasattr(owner, name)]
    if missing:
        raise RuntimeError(f"perf needs Locust's {', '.join(missing)}, which Locust {locust.__version__} lacks")
    locust.stats.get_stats_summary = _labelled(locust.stats.get_stats_summary, _stats_header)
    locust.stats.get_percentile_stats_summary = _labelled(locust.stats.get_percentile_stats_summary, _percentiles_title)
    StatsEntry.to_string = _row
    StatsEntry.percentile = _percentile_row
    StatsEntry.to_dict = _with_extremes(StatsEntry.to_dict)
    StatsCSV._percentile_fields = _csv_percentiles
    locust.stats.bucket_response_time = three_figures  # last: it marks the rest as done


@events.init.add_listener
def _install(environment: Environment, **_: object) -> None:
    install()
