"""Benchmark: budgeted searches against the exhaustive grid, on a 48-config space of the
reference ensemble (tuned profile) with p99 <= 50 ms.

    .venv/bin/python bench/big_space.py --runs 3
    .venv/bin/python bench/big_space.py --runs 3 --grid-from runs/bench-big-grid   # reuse a grid run
    .venv/bin/python bench/big_space.py --grid-from runs/bench-big-grid --budget 5.5m   # a budget in time

The space: both models' instance counts (1, 2) x the preprocessor's queue delay (0, 1000, 5000 us)
x the classifier's (0, 100, 1000, 5000 us). The grid load-searches every config and races them
all; `--search optuna` and `--search guided` load-search only the configs they pick (a quarter of
the space by default) and race their best. Printed per run: wall time, configs measured, the
recommendation, its raced throughput and p99; then each budgeted run against the grid: its
winner's throughput in the grid's own race over the grid's fastest config's there, and its wall
time over the grid's (goal: within 5 % of the grid's best in at most a quarter of its time, 3 of 3).
`--summarize` reads the run folders again without re-running them.

The grid's race measures 48 configs a few times each over a quarter of an hour, so its own
"fastest" is a noisy pick on a flat space (its recommendation read 0.92 of it in the fifth
session). `--verify N` settles it side by side: N short sweeps of the small grid the
recommendations and the grid's fastest span, all at the same concurrencies (from two below the
lowest level they were raced at to the highest), the configs' order reversed every other sweep;
every recommendation is then judged by its throughput where its mean p99 crosses the SLO over
the best's (``verified``), as well as by the grid's race (``in_grid``). Sweeps already in
`verify-at-slo/` are kept, so `--summarize --verify N` measures only what is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SLO_MS = 50.0
PROFILE = ["--profile", "tuned", "--slo-p99-ms", f"{SLO_MS:g}"]
SPACE = [*PROFILE,
         "--param", "preprocessor.instance_count", "--values", "1", "2",
         "--param", "classifier.instance_count", "--values", "1", "2",
         "--param", "preprocessor.max_queue_delay_microseconds", "--values", "0", "1000", "5000",
         "--param", "classifier.max_queue_delay_microseconds", "--values", "0", "100", "1000", "5000"]  # fmt: skip
COLUMNS = ["preprocessor.instance_count", "classifier.instance_count", "preprocessor.max_queue_delay_microseconds",
           "classifier.max_queue_delay_microseconds"]  # fmt: skip


def sweep(out: Path, extra: list[str], space: list[str] = SPACE) -> float:
    """Run one sweep; its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "perf", "sweep", *space, "--out", str(out), *extra], cwd=ROOT, check=True,
                   capture_output=True, text=True)  # fmt: skip
    return time.perf_counter() - started


def finished(out: Path) -> bool:
    meta = out / "metadata.json"
    return meta.is_file() and json.loads(meta.read_text())["status"] == "finished"


def labels(out: Path) -> dict[str, str]:
    """Each config of a run folder by its settings (a/b/c/d in COLUMNS' order): runs name the
    same config by these, whatever its id."""
    table = pd.read_csv(out / "results.csv", dtype={"point_id": str}).drop_duplicates("point_id")
    return {row["point_id"]: "/".join(str(row[c]) for c in COLUMNS) for _, row in table.iterrows()}


def verify(out: Path, configs: set[str], levels: list[float], sweeps: int) -> dict[str, float]:
    """Each of ``configs`` (a/b/c/d labels) by its throughput at the SLO over the best's, all
    measured at the same ``levels`` in ``sweeps`` short sweeps of the small grid they span, the
    configs' order reversed every other sweep (a finished sweep there is read, not re-run).

    Not each at its own level: the configs this space's runs ship keep their p99 near 50 ms at
    6 or 7 in flight, so which level a config is measured at is a single load-search reading's
    coin flip, and a level is worth 15 % here. Measured at its own level, the same pair read
    0.694, 0.771 and 0.876 of each other in three runs, and 0.98 to 1.03 at the same levels
    (ten alternating sweeps). So each config's mean throughput and p99 at each level, over the
    sweeps, give its throughput where its p99 crosses the SLO (linear between the two levels
    around it): what the race estimates, and what a user of the config gets."""
    values = [sorted({label.split("/")[i] for label in configs}, key=float) for i in range(len(COLUMNS))]
    concurrency = ["--concurrency", *(f"{level:g}" for level in levels)]
    for i in range(sweeps):
        folder = out / f"v{i + 1}"
        if not finished(folder):  # an interrupted one resumes
            ordered = [vs if i % 2 == 0 else vs[::-1] for vs in values]
            space = [*PROFILE, *(a for column, vs in zip(COLUMNS, ordered, strict=True)
                                 for a in ("--param", column, "--values", *vs))]  # fmt: skip
            seconds = sweep(folder, [*concurrency, "--repeats", "1"], space)
            print(f"verification sweep {i + 1} of {sweeps}: {seconds:.0f} s", flush=True)
    files = [out / f"v{i + 1}" / "results.csv" for i in range(sweeps)]  # the N asked, not all there
    table = pd.concat(pd.read_csv(f, dtype={"point_id": str}) for f in files)
    table = table[table["status"] == "ok"]
    table["label"] = table[COLUMNS].astype(str).agg("/".join, axis=1)
    at_slo = {label: _at_slo(rows.groupby("load_level")[["throughput", "p99_ms"]].mean())
              for label, rows in table.groupby("label") if label in configs}  # fmt: skip
    for label, value in sorted(at_slo.items()):
        print(f"  {label}: {value:.1f} infer/s at p99 {SLO_MS:g} ms", flush=True)
    best = max(v for v in at_slo.values() if not math.isnan(v))  # NaN: no level within the SLO
    return {label: round(value / best, 3) for label, value in at_slo.items()}


def _at_slo(curve: pd.DataFrame) -> float:
    """Throughput where mean p99 crosses the SLO, linear between the levels around it; the
    highest level's throughput where every level is within it; NaN where none is."""
    within = curve[curve["p99_ms"] <= SLO_MS]
    if within.empty:
        return float("nan")
    low = within.index.max()
    above = curve[curve.index > low]
    if above.empty:
        return float(curve.loc[low, "throughput"])
    a, b = curve.loc[low], above.iloc[0]
    return float(
        a["throughput"] + (b["throughput"] - a["throughput"]) * (SLO_MS - a["p99_ms"]) / (b["p99_ms"] - a["p99_ms"])
    )


def summary(out: Path, seconds: float | None = None) -> dict[str, object]:
    """What a run folder says: its time, configs measured, winner and the raced throughputs."""
    search = json.loads((out / "search.json").read_text())
    race = search["race"]
    table = pd.read_csv(out / "results.csv", dtype={"point_id": str, "load_level": str})
    if seconds is None:  # a reused run: its own record of when it started and finished
        meta = json.loads((out / "metadata.json").read_text())
        seconds = (
            dt.datetime.fromisoformat(meta["finished_at"]) - dt.datetime.fromisoformat(meta["started_at"])
        ).total_seconds()
    raced = table[table["phase"].isin(["race", "recheck"]) & (table["status"] == "ok")]
    means = {p: raced[(raced["point_id"] == p) & (raced["load_level"].astype(float) == level)]["throughput"].mean()
             for p, level in race["entrants"].items()}  # fmt: skip
    winner = race["winner"]
    names = labels(out)
    p99 = raced[raced["point_id"] == winner]["p99_ms"].mean()
    fastest = max(means, key=lambda p: means[p])
    return {"seconds": round(seconds), "configs": table[table["phase"].isin(["probe", "bisect"])]["point_id"].nunique(),
            "rows": len(table), "failed": int((table["status"] != "ok").sum()), "verdict": race["verdict"],
            "winner": names[winner], "throughput": round(means[winner], 1),
            "p99_ms": round(p99, 1), "fastest": round(max(means.values()), 1),
            "stopped": search.get("budgeted", {}).get("stopped", ""), "point": winner, "means": means,
            "level": race["entrants"][winner], "fastest_level": race["entrants"][fastest],
            "fastest_config": names[fastest]}  # fmt: skip


def predicted_on(servers: int, out: Path) -> float:
    """The grid's wall time on ``servers`` servers by its own rows: each config's load search
    (its apply, warm-up and measurements) is one job, placed longest first on the server free
    soonest; the race runs on one server after them, as its verdict must not depend on which
    server measured whom."""
    table = pd.read_csv(out / "results.csv", dtype={"point_id": str})
    searched = table[table["phase"].isin(["probe", "bisect"])]
    jobs = sorted((g["apply_s"].iloc[0] + g["duration_s"].sum() for _, g in searched.groupby("point_id")), reverse=True)
    loads = [0.0] * servers
    for job in jobs:
        loads[loads.index(min(loads))] += job
    raced = table[~table["phase"].isin(["probe", "bisect"])]
    return max(loads) + raced["duration_s"].sum() + raced["apply_s"].fillna(0).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each budgeted search")
    parser.add_argument("--searches", nargs="+", default=["optuna", "guided"])
    parser.add_argument("--grid-from", type=Path, help="a finished grid run of this space to compare with")
    parser.add_argument("--budget", help="the budgeted searches' --budget (default perf's: a quarter of the configs)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-big-space")
    parser.add_argument(
        "--verify",
        type=int,
        metavar="N",
        help="then measure the recommendations and the grid's fastest at the same levels, in N alternating sweeps",
    )
    parser.add_argument("--summarize", action="store_true", help="re-run nothing: summarize the runs in --out")
    args = parser.parse_args()
    grid_out = args.grid_from.resolve() if args.grid_from else args.out / "grid"
    if not args.summarize:
        shutil.rmtree(args.out, ignore_errors=True)
        if not args.grid_from:
            sweep(grid_out, [])
        for search in args.searches:
            for i in range(args.runs):
                extra = ["--search", search, *(["--seed", str(i)] if search == "optuna" else []),
                         *(["--budget", args.budget] if args.budget else [])]  # fmt: skip
                sweep(args.out / f"{search}{i + 1}", extra)
                print(f"{search} {i + 1} done", flush=True)
    grid = summary(grid_out)
    one = predicted_on(1, grid_out)
    print("the grid's measuring on N servers (cost model from its rows): "
          + ", ".join(f"{n}: {predicted_on(n, grid_out):.0f} s ({one / predicted_on(n, grid_out):.2f}x)"
                      for n in (1, 2, 4, 8)), flush=True)  # fmt: skip
    # The machine drifts over an hour (the baseline's throughput at concurrency 8 fell 18 % between
    # the grid and the last budgeted run here), so a budgeted run's recommendation is judged by
    # the grid's own race measurements of that config, all taken in one run: the grid's best
    # (and, with --verify, by a side-by-side run of the few configs in question).
    fastest = max(grid["means"].values())
    results = []
    for search in args.searches:
        for i in range(args.runs):
            out = args.out / f"{search}{i + 1}"
            if not finished(out):
                continue
            result = {"run": f"{search} {i + 1}", **summary(out)}
            result["in_grid"] = round(grid["means"].get(result["point"], float("nan")) / fastest, 3)
            result["of_grid_time"] = round(result["seconds"] / grid["seconds"], 3)
            results.append(result)
    columns = ["seconds", "configs", "rows", "failed", "winner", "throughput", "p99_ms", "verdict", "in_grid",
               "of_grid_time", "stopped"]  # fmt: skip
    grid_row = {"run": "grid", **grid, "in_grid": round(grid["means"][grid["point"]] / fastest, 3), "of_grid_time": 1}
    verified: dict[str, float] = {}
    if args.verify:
        configs = {str(r["winner"]) for r in [grid_row, *results]} | {str(grid["fastest_config"])}
        raced = [float(r["level"]) for r in [grid_row, *results]] + [float(grid["fastest_level"])]
        levels = [float(level) for level in range(int(min(raced)) - 2, int(max(raced)) + 1)]
        verified = verify(args.out / "verify-at-slo", configs, levels, args.verify)
        columns.insert(columns.index("in_grid") + 1, "verified")
        for r in [grid_row, *results]:
            r["verified"] = verified.get(str(r["winner"]), float("nan"))
        said = ", ".join(f"{config} {share}" for config, share in sorted(verified.items()))
        print(f"at the SLO, {args.verify} alternating sweeps at {levels} (over the best): {said}")
    print("| run | " + " | ".join(columns) + " |\n|" + " --- |" * (len(columns) + 1))
    for r in [grid_row, *results]:
        print(f"| {r['run']} | " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    for search in args.searches:
        mine = [r for r in results if str(r["run"]).startswith(search)]
        for judge, by in [("in_grid", "the grid's own race"), *([("verified", "at the SLO")] if verified else [])]:
            met = sum(r[judge] >= 0.95 and r["of_grid_time"] <= 0.25 for r in mine)
            print(f"{search}: its recommendation within 5 % of the best ({by}) in at most a quarter of the grid's "
                  f"time in {met} of {len(mine)}")  # fmt: skip


if __name__ == "__main__":
    main()
