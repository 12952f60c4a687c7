"""The figures of a report and of a comparison, from summaries (one row per point and load
level, see analysis.summarize). Every function takes one or more runs, so a comparison
overlays what a report draws alone: a config keeps its colour across runs, a run its line
style. Configs are labelled by their parameter values, never by an opaque id.

Figures are built without pyplot: no global state and no GUI backend, so a report saves
them from any thread and a notebook displays them as they are returned."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from perf import analysis
from perf.drivers.perf_analyzer import LATENCY_COLUMNS
from perf.observe import PHASES

BASELINE_COLOR = "#222222"
PALETTE = matplotlib.colormaps["tab10"].colors
RUN_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
MODEL_MAPS = ["Blues", "Oranges", "Greens", "Purples", "Reds"]
STYLE = {
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "legend.fontsize": 8,
    "legend.frameon": False,
}
CLIENT_PARTS = [c for c in LATENCY_COLUMNS.values() if c not in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms")]
LOAD_AXIS = {"concurrency": "concurrency (requests in flight)", "request_rate": "request rate (requests/s)"}


@dataclass(frozen=True)
class Curves:
    """One run as plotted: its summary with a ``label`` per point, and its name for overlays."""

    name: str
    summary: pd.DataFrame

    @property
    def load_kind(self) -> str:
        return str(self.summary["load_kind"].iloc[0])


def point_labels(summary: pd.DataFrame, param_columns: list[str], varying_only: bool = True) -> pd.Series:
    """``instance_count=2, preferred_batch_size=[16]``: each setting by the last part of its
    path, after its model's name only when several models are swept. With ``varying_only``,
    settings every swept point shares (a fixed ``--param``) are left out, so legends stay
    short; the repository's own config says it is the baseline."""
    grid = summary[~summary["is_baseline"].astype(bool)]
    shown = [c for c in param_columns if not varying_only or grid.empty or grid[c].astype(str).nunique() > 1]
    shown = shown or param_columns
    several_models = len({c.split(".", 1)[0] for c in shown}) > 1

    def short(column: str) -> str:
        model, _, path = column.partition(".")
        if not path:  # a tied setting's bare name: it names no one model
            return column
        name = path.rsplit(".", 1)[-1]
        return f"{model}.{name}" if several_models else name

    def label(row: pd.Series) -> str:
        text = ", ".join(f"{short(c)}={_value_text(row[c])}" for c in shown)
        return f"baseline: {text}" if row["is_baseline"] else text

    return summary.apply(label, axis=1)


def _value_text(value: object) -> str:
    """A value as a legend shows it: a tied setting whose models differ (the baseline's
    ``{"preprocessor": [8, 16], "classifier": [32]}``) as ``preprocessor [8, 16] / classifier [32]``.
    A setting the config leaves out (an empty cell, NaN once read) is ``unset``, and a whole
    number stays whole where pandas made its column float for that NaN."""
    if isinstance(value, float):
        if math.isnan(value):
            return "unset"
        if value.is_integer():
            return str(int(value))
    text = str(value)
    if text.startswith("{"):
        try:
            per_model = json.loads(text)
        except json.JSONDecodeError:
            return text
        return " / ".join(f"{model} {json.dumps(v)}" for model, v in per_model.items())
    return text


def curves(name: str, summary: pd.DataFrame, param_columns: list[str]) -> Curves:
    labelled = summary.assign(
        label=point_labels(summary, param_columns),
        setting=point_labels(summary, param_columns, varying_only=False),
        level=summary["load_level"].astype(float),
    )
    return Curves(name, labelled.sort_values(["point", "level"] if "point" in labelled else ["level"]))


def _colors(runs: list[Curves]) -> dict[str, str]:
    labels = list(dict.fromkeys(label for run in runs for label in run.summary["label"]))
    others = iter(itertools.cycle(PALETTE))
    return {label: BASELINE_COLOR if label.startswith("baseline") else next(others) for label in labels}


def _legend(fig: Figure, runs: list[Curves], colors: dict[str, str]) -> None:
    """Configs by colour and, when several runs are overlaid, runs by line style: under the
    plots, so long labels take no width from them."""
    handles = [Line2D([], [], color=c, lw=2, label=label) for label, c in colors.items()]
    if len(runs) > 1:
        handles += [
            Line2D([], [], color="grey", ls=ls, marker=m, label=run.name)
            for run, (ls, m) in zip(runs, RUN_STYLES, strict=False)
        ]
    _legend_below(fig, handles)


def _legend_below(fig: Figure, handles: list) -> None:
    """The figure grows by the legend's height, so the plots keep theirs."""
    longest = max(len(h.get_label()) for h in handles)
    columns = 1 if longest > 70 else 2 if len(handles) > 3 else len(handles)
    legend_inches = 0.2 * math.ceil(len(handles) / columns) + 0.2
    fig.set_figheight(fig.get_figheight() + legend_inches)
    fig.legend(handles=handles, loc="lower center", ncols=columns, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))


def throughput_latency(runs: list[Curves], slo_p99_ms: float | None) -> Figure:
    """Throughput against p99, one curve per config through its load levels, with 95 %
    intervals where there are repeats, the SLO line, and the Pareto front ringed."""
    colors = _colors(runs)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9, 5))
        ax = fig.subplots()
        for run, (ls, marker) in zip(runs, RUN_STYLES, strict=False):
            for label, rows in run.summary.groupby("label", sort=False):
                ax.errorbar(
                    rows["p99_ms"], rows["throughput"],
                    xerr=_ci(rows["p99_ci"]), yerr=_ci(rows["throughput_ci"]),
                    color=colors[label], ls=ls, marker=marker, ms=5, capsize=3, lw=1.6, elinewidth=0.8,
                    zorder=3 if label.startswith("baseline") else 2,
                )  # fmt: skip
                if len(runs) == 1:
                    for row in rows.itertuples():
                        ax.annotate(f"{row.level:g}", (row.p99_ms, row.throughput), textcoords="offset points",
                                    xytext=(4, -10), fontsize=7, color=colors[label])  # fmt: skip
            front = run.summary[analysis.pareto_front(run.summary)].sort_values("p99_ms")
            ax.plot(front["p99_ms"], front["throughput"], ls=":", color="grey", lw=1, zorder=1, drawstyle="steps-post")
            ax.scatter(front["p99_ms"], front["throughput"], s=150, facecolors="none", edgecolors="black",
                       lw=1.2, zorder=4)  # fmt: skip
        if slo_p99_ms is not None:
            ax.axvline(slo_p99_ms, color="crimson", ls="--", lw=1.2)
            ax.axvspan(slo_p99_ms, max(ax.get_xlim()[1], slo_p99_ms * 1.05), color="crimson", alpha=0.05)
            slo_text = f" SLO p99 ≤ {slo_p99_ms:g} ms"
            ax.text(slo_p99_ms, 0.02, slo_text, color="crimson", transform=ax.get_xaxis_transform())
        ax.set_xlabel("p99 latency (ms)")
        ax.set_ylabel("throughput (infer/s)")
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
        numbers = "; numbers are load levels" if len(runs) == 1 else ""
        ax.set_title(f"Throughput against p99 latency (ringed: Pareto front{numbers})")
        _legend(fig, runs, colors)
    return fig


def percentiles(runs: list[Curves]) -> Figure:
    """p50, p95 and p99 against load level, a panel each on one scale."""
    colors = _colors(runs)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(11, 3.8))
        axes = fig.subplots(1, 3, sharey=True)
        for ax, column in zip(axes, ("p50_ms", "p95_ms", "p99_ms"), strict=True):
            for run, (ls, marker) in zip(runs, RUN_STYLES, strict=False):
                for label, rows in run.summary.groupby("label", sort=False):
                    ax.plot(rows["level"], rows[column], color=colors[label], ls=ls, marker=marker, ms=4)
            ax.set_title(column.removesuffix("_ms"))
            _load_axis(ax, runs)
        axes[0].set_ylabel("latency (ms)")
        axes[0].set_ylim(bottom=0)
        fig.suptitle("Latency percentiles against load", fontweight="bold")
        _legend(fig, runs, colors)
    return fig


def breakdown(run: Curves, models: list[str]) -> Figure:
    """Where a request's time goes, per composing model and phase, stacked, one panel per
    load level; the black tick is the client's mean end-to-end latency, so the gap to it is
    time spent between the models and on the wire."""
    levels = sorted(run.summary["level"].unique())
    labels = list(dict.fromkeys(run.summary["label"]))
    shades = {
        (model, phase): matplotlib.colormaps[cmap](0.35 + 0.55 * i / max(1, len(PHASES) - 1))
        for model, cmap in zip(models, itertools.cycle(MODEL_MAPS), strict=False)
        for i, phase in enumerate(PHASES)
    }
    with matplotlib.rc_context(STYLE):
        height = 1.2 + 0.42 * len(labels)
        fig = Figure(figsize=(4.2 * len(levels) + 2.6, height))
        axes = fig.subplots(1, len(levels), sharey=True, squeeze=False)
        for ax, level in zip(axes[0], levels, strict=True):
            rows = run.summary[run.summary["level"] == level].set_index("label").reindex(labels)
            left = np.zeros(len(labels))
            for (model, phase), color in shades.items():
                values = rows.get(f"{model}.{phase}_ms", pd.Series(np.nan, index=rows.index)).fillna(0).to_numpy()
                ax.barh(labels, values, left=left, color=color, label=f"{model} {phase.replace('_', ' ')}")
                left += values
            mean = _client_mean_ms(rows).dropna()
            if not mean.empty:
                ax.scatter(mean.to_numpy(), list(mean.index), marker="|", s=300, color="black", zorder=3,
                           label="end to end (client mean)")  # fmt: skip
            ax.set_title(f"{run.load_kind} {level:g}")
            ax.set_xlabel("mean ms per request")
            ax.invert_yaxis()
        handles, names = axes[0][0].get_legend_handles_labels()
        axes[0][-1].legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle("Latency breakdown per composing model", fontweight="bold")
        fig.tight_layout()
    return fig


def heatmap(grid: pd.DataFrame, slo_p99_ms: float | None) -> Figure:
    """A two-parameter sweep at a glance: each combination's best throughput under the SLO."""
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = Figure(figsize=(1.6 + 1.3 * len(grid.columns), 1.4 + 0.7 * len(grid.index)))
        ax = fig.subplots()
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
        low, high = np.nanmin(values, initial=np.inf), np.nanmax(values, initial=-np.inf)
        for (i, j), value in np.ndenumerate(values):
            bright = not math.isnan(value) and (value - low) > 0.6 * (high - low)  # viridis turns yellow
            text = "no level meets it" if math.isnan(value) else f"{value:.0f}"
            color = "grey" if math.isnan(value) else "black" if bright else "white"
            ax.text(j, i, text, ha="center", va="center", color=color)
        ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
        ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
        ax.set_xlabel(str(grid.columns.name))
        ax.set_ylabel(str(grid.index.name))
        slo = f" at p99 ≤ {slo_p99_ms:g} ms" if slo_p99_ms is not None else ""
        ax.set_title(f"Best throughput (infer/s){slo}")
        fig.colorbar(image, ax=ax, label="infer/s")
        fig.tight_layout()
    return fig


def resources(runs: list[Curves]) -> Figure:
    """The server's process tree (CPU in cores' percent, peak resident memory) and GPU use
    where the host has GPUs, against load level."""
    panels = [("server_cpu_percent", "server CPU (% of one core)"), ("server_rss_mb", "server memory (MB, peak RSS)")]
    if any(run.summary.get("gpu_util", pd.Series(dtype=float)).notna().any() for run in runs):
        panels.append(("gpu_util", "GPU utilization (%)"))
    colors = _colors(runs)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.5 * len(panels), 3.6))
        axes = fig.subplots(1, len(panels))
        for ax, (column, title) in zip(axes, panels, strict=True):
            for run, (ls, marker) in zip(runs, RUN_STYLES, strict=False):
                for label, rows in run.summary.groupby("label", sort=False):
                    if column in rows:
                        ax.plot(rows["level"], rows[column], color=colors[label], ls=ls, marker=marker, ms=4)
            ax.set_title(title)
            _load_axis(ax, runs)
            ax.set_ylim(bottom=0)
        fig.suptitle("Resources of the server", fontweight="bold")
        _legend(fig, runs, colors)
    return fig


def _load_axis(ax: Axes, runs: list[Curves]) -> None:
    """Ticks at the levels measured, not at values between them."""
    ax.set_xticks(sorted({level for run in runs for level in run.summary["level"]}))
    ax.set_xlabel(LOAD_AXIS.get(runs[0].load_kind, runs[0].load_kind))


def _client_mean_ms(rows: pd.DataFrame) -> pd.Series:
    """The client's mean latency: perf_analyzer's average where it gives one, else the sum of
    the parts its CSV splits it into (send, network, server phases, receive)."""
    if "avg_ms" in rows and rows["avg_ms"].notna().any():
        return rows["avg_ms"]
    parts = [c for c in CLIENT_PARTS if c in rows]
    return rows[parts].sum(axis=1, min_count=1) if parts else pd.Series(np.nan, index=rows.index)


def _ci(values: pd.Series) -> np.ndarray | None:
    """Error bars where the interval is known (repeats), none where it is not."""
    filled = values.fillna(0).to_numpy()
    return filled if filled.any() else None
