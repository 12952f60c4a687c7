"""Analysis as pure functions of hand-made tables: intervals, the best config under an SLO,
significance and ties, the Pareto front, the gain over the baseline, the two-parameter grid."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from perf import analysis, findings, report
from perf.results import Run


def table(rows: list[tuple[str, str, int, float, float]], baseline: str = "a") -> pd.DataFrame:
    return pd.DataFrame(
        [{"point_id": p, "load_kind": "concurrency", "load_level": lvl, "repeat": r, "throughput": t, "p99_ms": q,
          "p50_ms": q / 2, "status": "ok", "is_baseline": p == baseline, "x": p} for p, lvl, r, t, q in rows]
    )  # fmt: skip


def test_confidence_interval_of_the_mean() -> None:
    # n = 3, sd = 1: t(0.975, 2) = 4.303, half-width 4.303 / sqrt(3) = 2.484
    assert analysis.ci_halfwidth(pd.Series([9.0, 10.0, 11.0])) == pytest.approx(2.484, abs=1e-3)
    assert math.isnan(analysis.ci_halfwidth(pd.Series([10.0])))


def test_best_under_slo_and_a_clear_winner() -> None:
    rows = [("a", "1", r, 100 + r, 10) for r in range(3)] + [("a", "4", r, 300 + r, 80) for r in range(3)]
    rows += [("b", "1", r, 200 + r, 20) for r in range(3)] + [("b", "4", r, 250 + r, 45) for r in range(3)]
    t = table(rows)
    summary = analysis.summarize(t, ["x"])
    choice = analysis.recommend(t, summary, slo_p99_ms=50)
    # a at level 4 is fastest but breaks the SLO; b at level 4 meets it.
    assert (choice.best.point_id, choice.best.load_level) == ("b", "4")
    assert (choice.runner_up.point_id, choice.runner_up.load_level) == ("a", "1")
    assert choice.distinguishable is True
    assert analysis.recommend(t, summary, None).best.point_id == "a"


def test_a_tie_is_called_a_tie() -> None:
    rows = [("a", "1", r, v, 10) for r, v in enumerate([100, 110, 90])]
    rows += [("b", "1", r, v, 10) for r, v in enumerate([101, 95, 106])]
    t = table(rows)
    choice = analysis.recommend(t, analysis.summarize(t, ["x"]), None)
    assert choice.distinguishable is False and choice.p_value > 0.05


def test_one_repeat_cannot_tell() -> None:
    t = table([("a", "1", 0, 100, 10), ("b", "1", 0, 90, 10)])
    choice = analysis.recommend(t, analysis.summarize(t, ["x"]), None)
    assert choice.best.point_id == "a" and choice.distinguishable is None


def test_no_point_meets_the_slo() -> None:
    t = table([("a", "1", 0, 100, 60)])
    assert analysis.recommend(t, analysis.summarize(t, ["x"]), 50).best is None


def test_the_pareto_front_keeps_only_undominated_points() -> None:
    summary = pd.DataFrame({
        "throughput": [100, 200, 150, 300, 300],
        "p99_ms":     [5,   10,  12,  30,  40],
    })  # fmt: skip
    # 150 at 12 ms is beaten by 200 at 10 ms; 300 at 40 ms by 300 at 30 ms.
    assert analysis.pareto_front(summary).tolist() == [True, True, False, True, False]


def test_gain_over_the_baseline_with_its_interval() -> None:
    rows = [("a", "1", r, v, 10) for r, v in enumerate([100, 102, 98])]  # "a" is the baseline
    rows += [("b", "1", r, v, 10) for r, v in enumerate([150, 153, 147])]
    t = table(rows)
    summary = analysis.summarize(t, ["x"])
    best = analysis.recommend(t, summary, 50).best
    gain = analysis.gain_over_baseline(t, summary, best, 50)
    assert gain.baseline.point_id == "a" and gain.ratio == pytest.approx(0.5)
    # Welch: difference 50, se = sqrt(9/3 + 4/3) = 2.08, df about 3.8: the interval is a few % either side.
    assert 0.40 < gain.low < 0.5 < gain.high < 0.60


def test_a_gain_within_noise_has_an_interval_across_zero() -> None:
    rows = [("a", "1", r, v, 10) for r, v in enumerate([100, 120, 80])]
    rows += [("b", "1", r, v, 10) for r, v in enumerate([105, 125, 85])]
    t = table(rows)
    summary = analysis.summarize(t, ["x"])
    gain = analysis.gain_over_baseline(t, summary, analysis.recommend(t, summary, None).best, None)
    assert gain.low < 0 < gain.high


def test_no_gain_without_a_baseline_meeting_the_slo() -> None:
    rows = [("a", "1", 0, 400, 90), ("b", "1", 0, 150, 10)]
    t = table(rows)
    summary = analysis.summarize(t, ["x"])
    best = analysis.recommend(t, summary, 50).best
    assert best.point_id == "b" and analysis.gain_over_baseline(t, summary, best, 50) is None


def test_the_grid_of_two_parameters_under_the_slo() -> None:
    rows = []
    for count, batch, level, throughput, p99 in [
        (1, 4, "1", 100, 10), (1, 4, "2", 180, 60),  # level 2 breaks the SLO
        (1, 16, "1", 120, 10), (2, 4, "1", 90, 10), (2, 16, "1", 95, 70),  # (2, 16) never meets it
    ]:  # fmt: skip
        rows.append({"point_id": f"{count}-{batch}", "load_kind": "concurrency", "load_level": level, "repeat": 0,
                     "status": "ok", "is_baseline": False, "count": count, "batch": batch,
                     "throughput": throughput, "p50_ms": p99 / 2, "p99_ms": p99})  # fmt: skip
    summary = analysis.summarize(pd.DataFrame(rows), ["count", "batch"])
    grid = analysis.throughput_grid(summary, "count", "batch", 50)
    assert grid.loc[1, 4] == 100 and grid.loc[1, 16] == 120 and grid.loc[2, 4] == 90
    assert math.isnan(grid.loc[2, 16])
    assert list(grid.index) == [1, 2] and list(grid.columns) == [4, 16]


def test_configs_are_labelled_by_the_settings_that_vary() -> None:
    from perf.plots import point_labels

    summary = pd.DataFrame({
        "is_baseline": [True, False, False],
        "preprocessor.parameters.preprocessing": ["per_image", "batched", "batched"],
        "classifier.instance_count": [2, 1, 2],
        "preprocessor.instance_count": [1, 1, 1],
    })  # fmt: skip
    columns = list(summary.columns[1:])
    # Only the classifier's count varies among the swept points: one model, so no model name.
    assert point_labels(summary, columns).tolist() == [
        "baseline: instance_count=2", "instance_count=1", "instance_count=2",
    ]  # fmt: skip
    assert point_labels(summary, columns, varying_only=False)[1] == (
        "preprocessor.preprocessing=batched, classifier.instance_count=1, preprocessor.instance_count=1"
    )


def test_a_setting_the_repository_leaves_unset_is_labelled_so_and_whole_numbers_stay_whole() -> None:
    """A ``parameters`` key the baseline lacks is an empty cell, read back as NaN, which makes
    pandas read the swept 1, 2, 3 as 1.0, 2.0, 3.0."""
    from perf.plots import point_labels

    summary = pd.DataFrame({"is_baseline": [True, False, False], "p.parameters.decode_threads": [math.nan, 1.0, 2.0]})
    assert point_labels(summary, ["p.parameters.decode_threads"]).tolist() == [
        "baseline: decode_threads=unset", "decode_threads=1", "decode_threads=2",
    ]  # fmt: skip


def test_the_noise_floor_is_the_pooled_spread_of_repeated_measurements() -> None:
    # a at 1: 99, 101 (cv 1.41 %); b at 1: 198, 202 (cv 1.41 %); b at 2 measured once: no spread.
    t = table([("a", "1", 0, 99, 10), ("a", "1", 1, 101, 10), ("b", "1", 0, 198, 10), ("b", "1", 1, 202, 10),
               ("b", "2", 0, 300, 20)])  # fmt: skip
    assert analysis.noise_floor(t) == pytest.approx(math.sqrt(2) / 100, rel=1e-6)
    assert analysis.noise_floor(t.iloc[[0, 2, 4]]) is None


def test_a_races_winner_is_recommended_at_its_searched_level() -> None:
    rows = [("a", "2", r, 200 + r, 20) for r in range(3)] + [("a", "4", 0, 260, 60)]
    rows += [("b", "4", r, 198 + r, 30) for r in range(3)]
    summary = analysis.summarize(table(rows), ["x"])
    race = {"entrants": {"a": 2.0, "b": 4.0}, "survivors": ["a", "b"], "winner": "b", "verdict": "equivalent"}
    choice = analysis.from_race(summary, race, 50)
    assert (choice.best.point_id, choice.best.load_level) == ("b", "4"), "the race's choice, not the fastest"
    assert (choice.runner_up.point_id, choice.runner_up.load_level) == ("a", "2"), "at its level, not at 4"
    assert choice.race is race


def test_an_unsettled_race_says_which_cheaper_config_it_passed_over() -> None:
    """A race that ended undecided and passed over a cheaper config measured 5.8 % behind: the
    headline does not call the winner the cheapest of those it could not be told apart from,
    the summary names the config passed over and by how much, and the race table marks it."""
    rows = [(p, "4", r, t + r, 20.0) for p, t in (("a", 250), ("b", 236), ("c", 200)) for r in range(3)]
    race = {"entrants": {"a": 4.0, "b": 4.0, "c": 4.0}, "survivors": ["a", "b"], "winner": "a", "leader": "a",
            "dropped": {"c": "round 3: behind a by 20%"}, "verdict": "undecided", "margin": 0.05, "measured": 12,
            "passed": {"b": -0.058}}  # fmt: skip
    searched = {"race": race, "load_search": {p: {"level": 4.0, "reason": ""} for p in "abc"}}
    found = findings.find(Run(Path("run"), table(rows, baseline="c"), {"model": "m", "params": ["x"]}, {}, searched))
    said = report.verdict(found)
    assert "not likely behind the fastest by more than 5%" in str(said["headline"])
    assert any("x=b costs less, but measured 5.8% behind" in line and "passed over" in line for line in said["lines"])
    assert any(w.startswith("After 12 race measurements, x=b could be shown neither behind") for w in said["warnings"])
    outcomes = {row["label"]: row["outcome"] for row in report.race_rows(found)}
    assert outcomes["x=b"].startswith("passed over: cheaper, but measured 5.8% behind"), outcomes


def test_configs_alike_at_their_level_are_named_by_their_settings_and_said_to_have_raced_as_one() -> None:
    twin, kept, slow = "f34aa391fd", "97ed81d1f5", "25d4d0d788"
    rows = [(p, "4", r, t + r, 20.0) for p, t in ((twin, 250.0), (kept, 250.0), (slow, 180.0)) for r in range(3)]
    race = {"entrants": {twin: 4.0, kept: 4.0, slow: 4.0}, "survivors": [kept], "winner": kept, "leader": kept,
            "dropped": {twin: f"round 0: runs as {kept} does at 4: no batch there reaches the batch sizes that "
                              "tell them apart; it costs more", slow: f"round 2: behind {kept} by 28.0%"},
            "folded": {twin: kept}, "verdict": "clear", "margin": 0.05, "measured": 4}  # fmt: skip
    searched = {"race": race, "load_search": {p: {"level": 4.0, "reason": ""} for p in (twin, kept, slow)}}
    table_ = table(rows)
    table_["x"] = table_["point_id"].map({twin: 16, kept: 8, slow: 2})
    found = findings.find(Run(Path("run"), table_, {"model": "m", "params": ["x"]}, {}, searched))
    lines = report.verdict(found)["lines"]
    assert lines[0].startswith("The fastest: every other config raced was measured behind it by more than 5%")
    assert "x=16 runs as x=8 does at concurrency 4: no batch there reaches the batch sizes that tell them apart, " \
        "so they raced as one, and it costs more." in lines  # fmt: skip
    outcomes = {row["label"]: row["outcome"] for row in report.race_rows(found)}
    assert outcomes["x=2"] == "dropped, round 2: behind x=8 by 28.0%"
    assert outcomes["x=16"] == (
        "dropped, round 0: runs as x=8 does at 4: no batch there reaches the batch sizes that tell them apart; "
        "it costs more"
    ), outcomes


@pytest.mark.parametrize("verdict", ["equivalent", "leads", "undecided"])
def test_a_race_the_users_config_ties_says_keep_it(verdict: str) -> None:
    """The repository's own config (a) won without being shown behind: the answer is to keep
    it, naming the configs it could not be told apart from; never "Ship" a change no one
    showed to pay, and the throughput line stays."""
    rows = [(p, "4", r, t + r, 20.0) for p, t in (("a", 248), ("b", 250), ("c", 200)) for r in range(3)]
    leader = "a" if verdict == "leads" else "b"
    race = {"entrants": {"a": 4.0, "b": 4.0, "c": 4.0}, "survivors": ["a", "b"], "winner": "a", "leader": leader,
            "dropped": {"c": "round 3: behind b by 20%"}, "verdict": verdict, "margin": 0.05, "measured": 12,
            "same_cost": []}  # fmt: skip
    searched = {"race": race, "load_search": {p: {"level": 4.0, "reason": ""} for p in "abc"}}
    found = findings.find(Run(Path("run"), table(rows), {"model": "m", "params": ["x"]}, {}, searched))
    said = report.verdict(found)
    assert str(said["headline"]).startswith("Keep the repository's own config (baseline: x=a)"), said["headline"]
    assert "x=b could not be told apart from it" in said["lines"][0]
    assert any("infer/s at concurrency 4" in line for line in said["lines"])


def test_a_grid_best_not_told_from_the_users_config_keeps_it() -> None:
    """A grid with repeats: b measured 1 % ahead of the repository's own config a, well within
    the noise (the gain's interval includes 0): the answer is to keep a, not to ship b. Shown
    3 % ahead with tight repeats, b is shipped."""
    for spread, kept in ((5.0, "a"), (0.5, "b")):
        rows = [("a", "1", r, 100 + spread * d, 10) for r, d in enumerate([-1, 0, 1])]
        rows += [("b", "1", r, 101 + spread * d if kept == "a" else 103 + spread * d, 10)
                 for r, d in enumerate([1, -1, 0])]  # fmt: skip
        found = findings.find(Run(Path("run"), table(rows), {"model": "m", "params": ["x"]}, {}, {}))
        said = report.verdict(found)
        assert found.recommendation.best.point_id == kept, (spread, said)
        assert str(said["headline"]).startswith("Keep the repository's own config" if kept == "a" else "Ship x=b")
