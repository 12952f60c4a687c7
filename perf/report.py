"""`perf report RUN` and `perf compare RUN_A RUN_B`: the figures as PNGs in a folder and one
self-contained HTML page (the figures embedded), the recommendation first."""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from matplotlib.figure import Figure

from perf import analysis, plots
from perf.findings import Findings
from perf.results import Run
from perf.search.load import KNEE_SHARE
from perf.search.race import ALONE, CLEAR, EQUIVALENT, LEADS, UNDECIDED

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("perf", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
)


@dataclass(frozen=True)
class Image:
    name: str  # file stem
    title: str
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def report_images(findings: Findings) -> list[Image]:
    run, slo = findings.run, findings.slo_p99_ms
    images = [
        Image("throughput_latency", "Throughput against p99", _png(plots.throughput_latency([findings.curves], slo))),
        Image("percentiles", "Latency percentiles against load", _png(plots.percentiles([findings.curves]))),
    ]
    composing = run.models[1:] or run.models
    if composing:
        images.append(Image("breakdown", "Where the time goes", _png(plots.breakdown(findings.curves, composing))))
    if len(run.param_columns) == 2:
        grid = analysis.throughput_grid(findings.curves.summary, *run.param_columns, slo)
        images.append(Image("heatmap", "Two parameters at a glance", _png(plots.heatmap(grid, slo))))
    images.append(Image("resources", "Resources", _png(plots.resources([findings.curves]))))
    return images


def compare_images(a: Findings, b: Findings, slo: float | None) -> list[Image]:
    both = [a.curves, b.curves]
    return [
        Image("throughput_latency", "Throughput against p99", _png(plots.throughput_latency(both, slo))),
        Image("percentiles", "Latency percentiles against load", _png(plots.percentiles(both))),
        Image("resources", "Resources", _png(plots.resources(both))),
    ]


def _write_images(images: list[Image], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        (folder / f"{image.name}.png").write_bytes(image.png)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _percent(value: float) -> str:
    return f"{value * 100:+.1f} %"


def _ranked_rows(findings: Findings) -> list[dict[str, str]]:
    return [
        {
            "label": row["label"],
            "level": f"{findings.curves.load_kind} {row['load_level']}",
            "throughput": _fmt(row["throughput"]),
            "throughput_ci": _fmt(row["throughput_ci"]),
            "p99": _fmt(row["p99_ms"]),
            "p99_ci": _fmt(row["p99_ci"]),
            "repeats": str(int(row["repeats"])),
        }
        for row in findings.ranked.to_dict("records")
    ]


def verdict(findings: Findings) -> dict[str, object]:
    """The recommendation in words: what to ship, by how much, and how sure."""
    rec, gain, slo = findings.recommendation, findings.gain, findings.slo_p99_ms
    kind = findings.curves.load_kind
    if rec.best is None:
        return {"headline": f"No config meets p99 ≤ {slo:g} ms at any load level measured.", "lines": [],
                "warnings": ["Lower the load levels, loosen the SLO, or sweep settings that cut latency."]}  # fmt: skip
    best = rec.best
    ci = f" ± {_fmt(best.throughput_ci)}" if not math.isnan(best.throughput_ci) else ""
    under = (" (--peak: the highest throughput, whatever its latency)" if slo == math.inf else
             f", SLO p99 ≤ {slo:g} ms" if slo is not None else
             f" (no SLO given: each config at its knee, the lowest load that gives {KNEE_SHARE:.0%} of its highest "
             "throughput; --slo-p99-ms or --peak ask otherwise)")  # fmt: skip
    lines = [f"{best.throughput:.1f}{ci} infer/s at {kind} {best.load_level}, p99 {best.p99_ms:.1f} ms{under}."]
    if gain is None:
        lines.append("The run has no baseline point meeting the SLO to compare with.")
    elif gain.baseline.point_id == best.point_id:
        lines.append("This is the repository's own config: no change beats it.")
    else:
        interval = f" (95 % CI {_percent(gain.low)} to {_percent(gain.high)})" if gain.low is not None else ""
        lines.append(
            f"{_percent(gain.ratio)} throughput over the baseline{interval}: the baseline gives "
            f"{gain.baseline.throughput:.1f} infer/s at {kind} {gain.baseline.load_level}."
        )
    if rec.race is not None:
        return _race_verdict(findings, lines)
    warnings = []
    if gain is not None and gain.low is not None and gain.low <= 0 <= gain.high:
        warnings.append("The gain over the baseline is within noise (its interval includes 0): "
                        "on this evidence the repository's config does as well.")  # fmt: skip
    if rec.runner_up is not None:
        runner = f"{findings.label(rec.runner_up.point_id)} ({rec.runner_up.throughput:.1f} infer/s)"
        if rec.distinguishable is None:
            warnings.append(f"Too few repeats to tell it from the runner-up, {runner}: sweep with --repeats 3 or more.")
        elif not rec.distinguishable:
            warnings.append(
                f"The top configs cannot be told apart: the runner-up {runner} is within noise "
                f"(Welch t-test p = {rec.p_value:.2f}). Either will do; more repeats may separate them."
            )
    headline = f"Ship {findings.label(best.point_id, 'setting')}"
    if gain is not None and gain.baseline.point_id == best.point_id:
        headline = f"Keep the repository's own config ({findings.label(best.point_id, 'setting')})"
    return {"headline": headline, "lines": lines, "warnings": warnings}


def found_baseline(findings: Findings, point_id: str) -> bool:
    """Whether ``point_id`` is the repository's own config."""
    rows = findings.curves.summary[findings.curves.summary["point_id"] == point_id]
    return bool(len(rows)) and bool(rows["is_baseline"].astype(bool).iloc[0])


def _race_verdict(findings: Findings, lines: list[str]) -> dict[str, object]:
    """A raced run's recommendation: how the winner won, what it was told apart from, and
    what could not be, said as plainly as a clear win."""
    rec = findings.recommendation
    race, best = rec.race, rec.best
    assert race is not None and best is not None
    name = lambda point: findings.label(point, "setting")  # noqa: E731
    same = [name(p) for p in race.get("same_cost", [])]
    others = [name(p) for p in race["survivors"] if p != best.point_id and name(p) not in same]  # they cost more
    margin = f"{race['margin']:.0%}"
    headline = f"Ship {name(best.point_id)}"
    warnings = []
    leader = name(race["leader"]) if race.get("leader") else "the leader"
    measured = f"{race.get('measured', 0)} race measurements"
    folded: dict[str, list[str]] = {}
    for point, kept in race.get("folded", {}).items():
        folded.setdefault(kept, []).append(name(point))
    for kept, twins in folded.items():
        level = f"{findings.curves.load_kind} {race['entrants'][kept]:g}"
        why = "the repository's own config for them all" if found_baseline(findings, kept) else \
            f"and {'it costs' if len(twins) == 1 else 'they cost'} more"  # fmt: skip
        lines.append(f"{' and '.join(twins)} {'runs' if len(twins) == 1 else 'run'} as {name(kept)} does at {level}: "
                     f"no batch there reaches the batch sizes that tell them apart, so they raced as one, "
                     f"{why}.")  # fmt: skip
    if race["verdict"] == CLEAR and set(race.get("dropped", {})) <= set(race.get("folded", {})):
        lines.insert(0, "The only config left once the configs alike at their level raced as one.")
    elif race["verdict"] == CLEAR:
        lines.insert(0, f"The fastest: every other config {'raced ' if folded else ''}was measured behind it by more "
                        f"than {margin} at 95 % confidence (one-sided tests, Bonferroni-corrected) within "
                        f"{measured}.")  # fmt: skip
    elif race["verdict"] == EQUIVALENT:
        costlier = (
            f"; {', '.join(others)} {'is' if len(others) == 1 else 'are'} as fast and cost more" if others else ""
        )
        lines.insert(0, f"Within {margin} of the best ({leader}) at 95 % confidence, and the cheapest such{costlier} "
                        f"(fewer instances, less memory, a shorter queue delay and smaller batches count as "
                        f"cheaper).")  # fmt: skip
    elif race["verdict"] == LEADS:
        costlier = f": {', '.join(others)} {'was' if len(others) == 1 else 'were'} not measured faster and cost more" \
            if others else ""  # fmt: skip
        lines.insert(0, f"The cheapest config in the race and the fastest measured{costlier}.")
    elif race["verdict"] == ALONE:
        lines.insert(0, "The only config with a load level that meets the SLO.")
    else:
        passed = race.get("passed", {})
        headline += f" (the cheapest config not likely behind the fastest by more than {margin})" if passed else \
            " (the cheapest of the configs it could not be told apart from)"  # fmt: skip
        for point, difference in passed.items():
            lines.append(f"{name(point)} costs less, but measured {-difference:.1%} behind {leader}: more likely "
                         f"than not behind by more than {margin}, though not shown so at 95 % confidence; passed "
                         "over.")  # fmt: skip
        unsettled = f"{', '.join(name(p) for p in passed)} could be shown neither behind it by more than {margin}" \
            if race.get("leader") == best.point_id else \
            f"{leader} measured faster, but it was neither shown ahead by more than {margin}"  # fmt: skip
        warnings.append(f"After {measured}, {unsettled} nor within {margin}; more measurements were unlikely to "
                        "settle it at this noise. Raise --max-rounds or --margin to try.")  # fmt: skip
    if same:
        lines.append(f"{', '.join(same)} {'costs' if len(same) == 1 else 'cost'} the same (instances, memory, queue "
                     "delay, batch sizes) and could not be told apart from it: either will do; it is named for "
                     "measuring faster, not shown to be.")  # fmt: skip
    if findings.gain is not None and findings.gain.baseline.point_id == best.point_id and race["verdict"] != ALONE:
        headline = f"Keep the repository's own config ({name(best.point_id)}): no change is shown to pay"
        tied = [p for p in race["survivors"] if p != best.point_id]
        told_apart = "" if not tied else f"; {', '.join(name(p) for p in tied)} could not be told apart from it"
        keeps = "The race keeps the config that runs today unless another is shown faster."
        said = {
            EQUIVALENT: f"Shown within {margin} of the fastest ({leader}) at 95 % confidence within {measured}"
                        f"{told_apart}: no change gains more than {margin} here. {keeps}",
            LEADS: f"The fastest measured, no other config shown ahead of it{told_apart}. {keeps}",
            UNDECIDED: f"No other config was shown ahead of it by more than {margin} at 95 % confidence within "
                       f"{measured}{told_apart}. {keeps}",
        }  # fmt: skip
        if race["verdict"] == UNDECIDED:  # the one verdict with no line of its own above
            lines.insert(0, said[UNDECIDED])
        elif race["verdict"] in said:
            lines[0] = said[race["verdict"]]
        lines[:] = [line for line in lines if not line.startswith("This is the repository's own config")]
    if budgeted := findings.run.search.get("budgeted"):
        lines.append(f"Searched {budgeted['measured']} of {budgeted['space']} configs with {budgeted['strategy']} "
                     f"(budget {budgeted['budget']}), then raced the best; the search stopped: "
                     f"{budgeted['stopped']}.")  # fmt: skip
    slo = findings.slo_p99_ms
    if carried := race.get("to_slo"):
        lines.append(f"Compared at the SLO: the readings of {len(carried)} of {len(race['entrants'])} configs were "
                     f"carried to p99 {slo:g} ms along the line to their next level up (the others had levelled "
                     "off, or had no level above).")  # fmt: skip
    if slo is not None and best.p99_ms > slo:
        lines.append(f"Its mean p99, {best.p99_ms:.1f} ms, is over the {slo:g} ms SLO by less than its readings vary: "
                     "they do not show it over at 95 % confidence (one-sided t-test).")  # fmt: skip
    floor = analysis.noise_floor(findings.run.table)
    if floor is not None:
        lines.append(f"Noise floor: the same config measured again at the same level varies by {floor:.1%} "
                     "(pooled coefficient of variation of throughput).")  # fmt: skip
    spread = race.get("spread", {})
    if "steps" in spread and spread["steps"] < spread["search"]:
        lines.append(f"Within the race's steps, measured one after the other, readings vary by {spread['steps']:.1%} "
                     f"about the fit, against {spread['search']:.1%} for the load search's, minutes apart: the "
                     "race compares configs within its steps, where the machine's drift cancels.")  # fmt: skip
    if race.get("recheck") is not None:
        drift = race["recheck"] / best.throughput - 1
        lines.append(f"Measured once more at the end: {race['recheck']:.1f} infer/s ({_percent(drift)} from its mean).")
        if floor is not None and abs(drift) > 3 * floor:
            warnings.append(f"The machine drifted during the run: the winner's last measurement is {_percent(drift)} "
                            "from its mean, over three times the noise floor.")  # fmt: skip
    return {"headline": headline, "lines": lines, "warnings": warnings}


def race_rows(findings: Findings) -> list[dict[str, str]]:
    """Every config's way through the search: its level, and why it left the race."""
    race = findings.recommendation.race or {}
    search = findings.run.search.get("load_search") or findings.run.search.get("grid", {})
    labelled = set(findings.curves.summary["point_id"])
    rows = []
    for point, record in search.items():
        if point == race.get("winner"):
            outcome = f"won ({race['verdict']})"
        elif point in race.get("dropped", {}):
            outcome = "dropped, " + race["dropped"][point]
        elif point in race.get("passed", {}):
            outcome = f"passed over: cheaper, but measured {-race['passed'][point]:.1%} behind, likely more than " \
                f"the {race['margin']:.0%} margin"  # fmt: skip
        elif point in race.get("survivors", []):
            winner = race.get("winner")
            costs = "costs the same" if point in race.get("same_cost", []) else "costs more"
            if winner and found_baseline(findings, winner):
                outcome = (
                    f"survived: not shown faster than the repository's own config by more than {race['margin']:.0%}"
                )
            elif race["verdict"] in (EQUIVALENT, LEADS):
                outcome = f"survived: as fast, {costs}"
            else:
                outcome = f"survived: not shown more than {race['margin']:.0%} behind; {costs}"
        else:
            outcome = "no level: " + record.get("reason", "none within the SLO")
        label = findings.label(point) if point in labelled else point
        raced = race.get("entrants", {}).get(point, record["level"])  # where the race left it (moved?)
        level = "" if raced is None else f"{findings.curves.load_kind} {raced:g}"
        if moves := race.get("moves", {}).get(point):
            outcome += f" (moved: {'; '.join(moves)})"
        for other in labelled & set(re.findall(r"\b[0-9a-f]{10}\b", outcome)):  # the race names configs by id
            outcome = outcome.replace(other, findings.label(other))
        rows.append({"label": label, "level": level, "outcome": outcome})
    return rows


def search_steps(findings: Findings) -> list[dict[str, str]]:
    """A budgeted search's configs in the order it chose them, each with why, and its score."""
    labelled = set(findings.curves.summary["point_id"])
    steps = (findings.run.search.get("budgeted") or {}).get("trail", [])
    return [
        {
            "step": str(i + 1),
            "label": findings.label(s["point"]) if s["point"] in labelled else s["point"],
            "why": s["why"],
            "level": "" if s.get("level") is None else f"{findings.curves.load_kind} {s['level']:g}",
            "score": "" if s.get("score") is None else f"{s['score']:.1f}",
        }
        for i, s in enumerate(steps)
    ]


def _faults(findings: Findings) -> list[dict[str, str]]:
    labelled = set(findings.curves.summary["point_id"])
    return [
        {
            "label": findings.label(r.point_id) if r.point_id in labelled else r.point_id,
            "level": str(r.load_level),
            "repeat": str(r.repeat),
            "status": r.status,
            "error": str(r.error).splitlines()[0][:240] if isinstance(r.error, str) else "",
        }
        for r in findings.faults.itertuples()
    ]


def apply_command(findings: Findings) -> str:
    slo = f" --slo-p99-ms {findings.slo_p99_ms:g}" if findings.slo_p99_ms is not None else ""
    return f"perf apply {findings.run.path}{slo}"


def write_report(findings: Findings) -> Path:
    """RUN/report.html and RUN/plots/*.png."""
    run = findings.run
    images = report_images(findings)
    _write_images(images, run.path / "plots")
    html = TEMPLATES.get_template("report.html.j2").render(
        title=f"perf report: {run.model} — {run.name}",
        run=run,
        meta=_meta(run),
        notes=run.metadata.get("notes", []),
        slo=findings.slo_p99_ms,
        verdict=verdict(findings),
        diff=findings.winner_diff,
        ranked=_ranked_rows(findings),
        race=race_rows(findings) if findings.recommendation.race else [],
        steps=search_steps(findings),
        images=images,
        faults=_faults(findings),
        apply_command=apply_command(findings),
    )
    out = run.path / "report.html"
    out.write_text(html)
    return out


def write_comparison(a: Findings, b: Findings, out: Path, slo: float | None) -> Path:
    """OUT/compare.html and OUT/*.png: the two runs overlaid, and each config's best side by side."""
    images = compare_images(a, b, slo)
    _write_images(images, out)
    html = TEMPLATES.get_template("compare.html.j2").render(
        title=f"perf compare: {a.run.name} against {b.run.name}",
        runs=[{"name": f.run.name, "meta": _meta(f.run), "verdict": verdict(f)} for f in (a, b)],
        slo=slo,
        rows=side_by_side(a, b),
        images=images,
    )
    page = out / "compare.html"
    page.write_text(html)
    return page


def side_by_side(a: Findings, b: Findings) -> list[dict[str, str]]:
    """Configs present in either run, matched by label, with B's throughput relative to A's."""
    best = lambda f: f.ranked.set_index("label")  # noqa: E731
    ra, rb = best(a), best(b)
    rows = []
    for label in dict.fromkeys([*ra.index, *rb.index]):
        ta = ra["throughput"].get(label, math.nan)
        tb = rb["throughput"].get(label, math.nan)
        rows.append({
            "label": label,
            "a": _fmt(ta), "a_p99": _fmt(ra["p99_ms"].get(label, math.nan)),
            "b": _fmt(tb), "b_p99": _fmt(rb["p99_ms"].get(label, math.nan)),
            "change": _percent(tb / ta - 1) if ta and not (math.isnan(ta) or math.isnan(tb)) else "",
        })  # fmt: skip
    return rows


def _meta(run: Run) -> dict[str, str]:
    load = run.plan["load"]
    race = f"then raced (margin {load['margin']:.0%})" if "margin" in load and not load["repeats"] else ""
    if isinstance(load["levels"], list):
        levels = f"{load['kind']} {' '.join(f'{v:g}' for v in load['levels'])}"
        levels += f", {race}" if race else f", {load['repeats'] or 1} repeat(s)"
    else:
        fixed = f"then {load['repeats']} measurements each"
        levels = f"concurrency searched, {race or fixed}"
        if load.get("search"):
            levels = f"{load['search']} search, {levels}"
    meta = run.metadata
    return {
        "model": run.model + (f" (profile {run.plan['profile']})" if run.plan.get("profile") else ""),
        "load": f"{levels}, driver {load.get('driver', 'perf_analyzer')}",
        "points": str(len(run.plan["points"])),
        "status": str(meta.get("status", "unknown")),
        "started": str(meta.get("started_at", "")),
        "host": f"{meta.get('host', {}).get('name', '?')}, {meta.get('host', {}).get('cores', '?')} cores, "
        f"{len(meta.get('gpus', []))} GPU(s)",
        "made": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "rows": f"{len(run.table)} rows, {int((run.table['status'] == 'ok').sum())} ok",
    }
