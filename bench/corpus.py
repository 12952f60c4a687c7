"""Benchmark: users' own models (tests/corpus) swept as a new user types it.

    .venv/bin/python bench/corpus.py --runs 3
    .venv/bin/python bench/corpus.py --runs 1 --models square_no_data

For each corpus model, `perf sweep --repo tests/corpus --model M --param instance_count`
(its values generated, each config's load searched, then raced), with the options the model
needs: bls its data and `--load add_sub`, square its data. `square_no_data` is the decoupled
model with no data: every measurement must time out and the sweep end (goal: under 2
minutes). Printed per run: wall time, rows, rows not ok (goal 0 but for square_no_data), the
verdict and the recommendation; then per model whether the runs agreed (goal 3 of 3)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
MODELS: dict[str, list[str]] = {
    "add_sub": ["--model", "add_sub"],
    "torch_linear": ["--model", "torch_linear"],
    "square": ["--model", "square", "--input-data", str(CORPUS / "square" / "inputs.json")],
    "bls": ["--model", "bls", "--load", "add_sub", "--input-data", str(CORPUS / "bls" / "inputs.json")],
    "square_no_data": ["--model", "square"],
}


def one_run(name: str, out: Path) -> dict[str, object]:
    argv = [sys.executable, "-m", "perf", "sweep", "--repo", str(CORPUS), *MODELS[name], "--param", "instance_count",
            "--out", str(out)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    table = pd.read_csv(out / "results.csv", dtype={"point_id": str})
    search = json.loads((out / "search.json").read_text()) if (out / "search.json").is_file() else {}
    race = search.get("race", {})
    column = f"{MODELS[name][1]}.instance_count"
    winner = table[table["point_id"] == race["winner"]][column].iloc[0] if race.get("winner") else None
    return {"model": name, "rc": done.returncode, "seconds": round(took), "rows": len(table),
            "not_ok": dict(Counter(table[table["status"] != "ok"]["status"])), "verdict": race.get("verdict"),
            "winner": None if winner is None else int(winner),
            "kept_baseline": bool(winner is not None and table[table[column] == winner]["is_baseline"].any()),
            }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-corpus", help="where the run folders go")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    results = []
    for i in range(args.runs):  # models alternate, so a slow spell of the machine does not fall on one model
        for name in args.models:
            result = one_run(name, args.out / f"{name}-{i + 1}")
            print(json.dumps(result), flush=True)
            results.append(result)
    print("| model | seconds (each run) | rows not ok | recommendation (each run) | same |\n|---|---|---|---|---|")
    for name in args.models:
        mine = [r for r in results if r["model"] == name]
        winners = [str(r["winner"]) for r in mine]
        print(f"| {name} | {', '.join(str(r['seconds']) for r in mine)} | "
              f"{', '.join(json.dumps(r['not_ok']) for r in mine)} | {', '.join(winners)} | "
              f"{max(Counter(winners).values())} of {len(mine)} |")  # fmt: skip


if __name__ == "__main__":
    main()
