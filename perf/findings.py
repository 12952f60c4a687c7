"""What a run says, before anything is drawn: the summary labelled by parameter values, each
config's best level, the recommendation with its gain over the baseline, and the winner's
config against the original. Shared by `perf report`, `perf compare` and `perf apply`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from perf import analysis, plots
from perf.plan import config_diff
from perf.results import OK, Run, RunError


@dataclass(frozen=True)
class Findings:
    run: Run
    slo_p99_ms: float | None
    curves: plots.Curves
    ranked: pd.DataFrame  # each config's best level under the SLO, best first, with labels
    recommendation: analysis.Recommendation
    gain: analysis.Gain | None
    faults: pd.DataFrame  # the rows that did not measure: status and error

    def label(self, point_id: str, column: str = "label") -> str:
        """How plots name a point; ``column="setting"``: every swept setting, fixed ones too."""
        rows = self.curves.summary[self.curves.summary["point_id"] == point_id]
        return str(rows[column].iloc[0])

    @property
    def winner_diff(self) -> str:
        """The best config's config.pbtxt files against the baseline point's, as run."""
        best = self.recommendation.best
        baseline = self.curves.summary[self.curves.summary["is_baseline"].astype(bool)]
        if best is None or baseline.empty:
            return ""
        original = self.run.configs(str(baseline["point_id"].iloc[0]))
        chosen = self.run.configs(best.point_id)
        return "\n".join(config_diff(original[m], chosen[m], m) for m in chosen if m in original)


def slo_of(run: Run, slo_p99_ms: float | None) -> float | None:
    """The SLO asked for now, else the one the sweep was run with."""
    return slo_p99_ms if slo_p99_ms is not None else run.metadata.get("slo_p99_ms")


def find(run: Run, slo_p99_ms: float | None = None) -> Findings:
    slo = slo_of(run, slo_p99_ms)
    summary = analysis.summarize(run.table, run.param_columns)
    if summary.empty:
        raise RunError(f"{run.path} has no successful measurement yet: nothing to report")
    curves = plots.curves(run.name, summary, run.param_columns)
    race = run.search.get("race")
    if race:  # a searched run: each config at the level its search chose, the race's verdict
        chosen, level_slo = analysis.at_levels(curves.summary, race["entrants"]), None
        ranked = analysis.best_per_point(chosen, None)
        recommendation = analysis.from_race(summary, race, slo)
    else:
        chosen, level_slo = summary, slo
        ranked = analysis.best_per_point(curves.summary, slo)
        recommendation = analysis.recommend(run.table, summary, slo)
    best = recommendation.best
    gain = analysis.gain_over_baseline(run.table, chosen, best, level_slo) if best else None
    if not race and gain is not None and gain.low is not None and gain.low <= 0:
        # The repository's own config cannot be told from the best: it is what runs today, kept.
        recommendation = replace(recommendation, best=gain.baseline, runner_up=best, distinguishable=False)
        gain = analysis.gain_over_baseline(run.table, chosen, gain.baseline, level_slo)
    faults = run.table[run.table["status"] != OK]
    return Findings(run, slo, curves, ranked, recommendation, gain, faults)
