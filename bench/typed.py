"""Benchmark: the design card's command as typed, run several times on the reference ensemble.

    .venv/bin/python bench/typed.py --runs 3 --slo-p99-ms 50
    .venv/bin/python bench/typed.py --runs 1 -- --repeats 5     # fixed repeats instead of racing

Each run is `perf sweep --param preferred_batch_size --slo-p99-ms 50` (plus any options after
--) from the repository root into a fresh run folder. Printed: each run's wall time, the time
spent measuring (the rows' own durations, applies and warm-ups left out), and of it the time
spent deciding (the race's and the recheck's rows, or the fixed repeats'), rows, verdict and
recommendation, then how many runs recommended the same config (goals: at most 10 minutes a
run, the same recommendation 3 of 3; racing at most half the measuring time of --repeats 5)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def one_run(out: Path, slo: float, extra: list[str]) -> dict[str, object]:
    argv = [sys.executable, "-m", "perf", "sweep", "--param", "preferred_batch_size", "--slo-p99-ms", f"{slo:g}",
            "--out", str(out), *extra]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True)
    took = time.perf_counter() - started
    race = json.loads((out / "search.json").read_text())["race"]
    table = pd.read_csv(out / "results.csv", dtype={"point_id": str})
    winner = table[table["point_id"] == race["winner"]]["preferred_batch_size"].iloc[0] if race["winner"] else None
    racing = table[table["phase"].isin(["race", "recheck"])]
    return {"seconds": round(took), "measuring_s": round(table["duration_s"].sum()),
            "racing_s": round(racing["duration_s"].sum()), "rows": len(table), "race_rows": len(racing),
            "failed": int((table["status"] != "ok").sum()), "verdict": race["verdict"], "rounds": race["rounds"],
            "winner": winner, "survivors": len(race["survivors"])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slo-p99-ms", type=float, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-typed", help="where the run folders go")
    parser.add_argument("extra", nargs="*", help="more `perf sweep` options, after --")
    args = parser.parse_args()
    results = []
    shutil.rmtree(args.out, ignore_errors=True)
    for i in range(args.runs):  # the folders stay, for `perf report`
        result = one_run(args.out / f"run{i + 1}", args.slo_p99_ms, args.extra)
        print(json.dumps(result), flush=True)
        results.append(result)
    winners = {str(r["winner"]) for r in results}
    columns = ["seconds", "measuring_s", "racing_s", "rows", "race_rows", "failed", "verdict", "winner"]
    print("| run | " + " | ".join(columns) + " |\n|" + " --- |" * (len(columns) + 1))
    for i, r in enumerate(results):
        print(f"| {i + 1} | " + " | ".join(str(r[c]) for c in columns) + " |")
    same = max(sum(str(r["winner"]) == w for r in results) for w in winners)
    print(f"same recommendation in {same} of {len(results)} runs")


if __name__ == "__main__":
    main()
