"""Benchmark, a reference for bench/big_space.py: Model Analyzer's quick search (its hill
climbing, the default for ensembles) on the reference ensemble's tuned profile, p99 <= 50 ms.

Model Analyzer is not a dependency of perf; give it an environment of its own:

    python3 -m venv /tmp/ma && /tmp/ma/bin/pip install triton-model-analyzer==1.58.0
    .venv/bin/python bench/ma_quick.py --model-analyzer /tmp/ma/bin/model-analyzer

It runs in local launch mode on the Triton and perf_analyzer that `perf setup` installed,
against a staged copy of the tuned profile (KIND_CPU on a host without a GPU, as perf serves
it), with the same JPEG input data as perf's sweeps. Its space is its own, not bench/big_space.py's:
each composing model's instance count (1 to 2 here, as there) and max_batch_size, dynamic
batching on, and the concurrency; queue delays are not among its dimensions. It restarts
Triton for every config. Printed: wall time, then every measurement (variant, each composing
model's settings, concurrency, throughput, p99) and the best one under the SLO by throughput.
They come from Model Analyzer's checkpoint: skip_summary_reports leaves no results table.
`--summarize` prints them again for an existing run, without running (or deleting) anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf import images, tools
from perf.drivers.perf_analyzer import write_input_data
from perf.repository import open_repository, stage

ROOT = Path(__file__).resolve().parent.parent
SLO_MS = 50  # p99 latency bound: Model Analyzer's constraint and the summary's filter alike


def profile_config(out: Path, tool: tools.Tools) -> Path:
    """Model Analyzer's profile config for the staged tuned repository; its path."""
    tuned = open_repository(ROOT / "model_repo", "tuned")
    for config in tuned.configs.values():  # its search starts at max_batch_size 1, which it
        if config.HasField("dynamic_batching"):  # calls illegal beside larger preferred sizes
            config.dynamic_batching.ClearField("preferred_batch_size")
    repository = stage(tuned, out / "repository", 0).path
    # Model Analyzer runs perf_analyzer in an environment of its own: the wrapper brings the
    # CUDA runtime library perf_analyzer links against (no GPU needed).
    wrapper = out / "perf_analyzer"
    library = tool.perf_analyzer_env()["LD_LIBRARY_PATH"]
    command = shlex.quote(str(tool.perf_analyzer))
    wrapper.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH={shlex.quote(library)} exec {command} "$@"\n')
    wrapper.chmod(0o755)
    blobs, _ = images.synthetic_set(32, seed=0)  # the 640x480 JPEGs perf's sweeps send
    data = write_input_data(blobs, out / "input.json")
    server_env = tool.server_env()
    config = {
        "model_repository": str(repository),
        "output_model_repository_path": str(out / "variants"),
        "override_output_model_repository": True,
        "export_path": str(out / "export"),
        "checkpoint_directory": str(out / "checkpoints"),
        "triton_launch_mode": "local",
        "triton_server_path": str(tool.tritonserver),
        "triton_server_flags": {"backend_directory": str(tool.backends), "cache_directory": str(tool.caches)},
        "triton_server_environment": {k: server_env[k] for k in ("LD_LIBRARY_PATH", "PATH")},
        "perf_analyzer_path": str(wrapper),
        "client_protocol": "grpc",
        "run_config_search_mode": "quick",
        "run_config_search_max_instance_count": 2,
        "cpu_only_composing_models": ["preprocessor", "classifier"],
        "profile_models": {"ensemble_model": {"cpu_only": True, "perf_analyzer_flags": {"input-data": str(data)}}},
        "constraints": {"perf_latency_p99": {"max": SLO_MS}},
        "objectives": ["perf_throughput"],
        "skip_summary_reports": True,
    }
    path = out / "profile.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass(frozen=True)
class Measurement:
    """One perf_analyzer run of a model config variant at one concurrency, as checkpointed."""

    variant: str
    composing: dict[str, str]  # composing model -> its settings, as `settings` words them
    concurrency: int
    throughput: float | None  # infer/s
    p99_ms: float | None


def settings(variant: dict[str, Any]) -> str:
    """A composing model's searched settings (max_batch_size, instances, dynamic batching).

    Read from the model config the checkpoint stores with each run config (protobuf JSON,
    camelCase), so a summary needs neither the variants folder nor the run's host.
    """
    config = variant["model_config"]
    groups = config.get("instanceGroup") or []
    instances = " + ".join(f"{g.get('count', 1)}x {g.get('kind', 'KIND_AUTO').removeprefix('KIND_')}" for g in groups)
    batching = config.get("dynamicBatching")
    if batching is None:
        dynamic = "no dynamic batching"
    else:
        names = {"maxQueueDelayMicroseconds": "queue delay {} us", "preferredBatchSize": "preferred {}"}
        details = ", ".join(names.get(k, k + " {}").format(v) for k, v in batching.items())
        dynamic = f"dynamic ({details})" if details else "dynamic"
    return f"{variant['variant_name']}: mbs {config.get('maxBatchSize', 0)}, {instances or 'default'}, {dynamic}"


def read_checkpoint(checkpoints: Path) -> list[Measurement]:
    """Every measurement in the latest checkpoint (the highest index, the one Model Analyzer
    itself resumes from).

    The concurrency comes from each measurement's own perf_analyzer parameters: a run config
    keeps only the concurrency of its first measurement. A record missing from a measurement
    reads as None, which keeps that measurement out of the best.
    """
    files = list(checkpoints.glob("*.ckpt"))
    if not files:
        sys.exit(f"no checkpoint in {checkpoints}: see the log")
    latest = max(files, key=lambda f: int(f.stem))
    results = json.loads(latest.read_text())["ResultManager.results"]["_results"]
    rows = []
    for variants in results.values():
        for variant, (run_config, measurements) in variants.items():
            composing = {
                c["model_config"]["name"]: settings(c)
                for model in run_config["_model_run_configs"]
                for c in model["_composing_config_variants"]
            }
            for measurement in measurements.values():
                for model in measurement["_model_config_measurements"]:
                    records = {tag: record["_value"] for tag, record in model["_non_gpu_data"]}
                    concurrency = model["_model_specific_pa_params"]["concurrency-range"]
                    throughput, p99 = records.get("perf_throughput"), records.get("perf_latency_p99")
                    rows.append(Measurement(variant, composing, concurrency, throughput, p99))
    return rows


def summarize(out: Path) -> None:
    """Print a run's measurements as a markdown table, then the best one under the SLO."""
    rows = read_checkpoint(out / "checkpoints")
    models = list(dict.fromkeys(m for row in rows for m in row.composing))

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    variants = list(dict.fromkeys(row.variant for row in rows))  # Model Analyzer's order: default first
    print(f"{len(variants)} configs, {len(rows)} measurements")
    print("| variant | " + " | ".join(models) + " | concurrency | throughput (infer/s) | p99 (ms) |")
    print("|---" * (len(models) + 4) + "|")
    for row in sorted(rows, key=lambda r: (variants.index(r.variant), r.concurrency)):
        cells = [row.variant, *(row.composing.get(m, "") for m in models), str(row.concurrency)]
        print("| " + " | ".join([*cells, number(row.throughput), number(row.p99_ms)]) + " |")
    within = [r for r in rows if r.throughput is not None and r.p99_ms is not None and r.p99_ms <= SLO_MS]
    if not within:
        print(f"no measurement meets p99 <= {SLO_MS} ms")
        return
    best = max(within, key=lambda r: r.throughput or 0.0)
    print(f"best under p99 <= {SLO_MS} ms: {best.variant} at concurrency {best.concurrency}: "
          f"{best.throughput:.1f} infer/s, p99 {best.p99_ms:.1f} ms")  # fmt: skip
    for model in models:
        print(f"  {model}: {best.composing.get(model, '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-analyzer", type=Path, help="the model-analyzer command")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ma-quick")
    parser.add_argument("--summarize", action="store_true", help="only summarize --out's existing checkpoint")
    args = parser.parse_args()
    out = args.out.resolve()
    if args.summarize:  # reads only: never clears --out
        summarize(out)
        return
    if args.model_analyzer is None:
        parser.error("--model-analyzer is required unless --summarize")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tool = tools.find()
    config = profile_config(out, tool)
    env = {**os.environ, **tool.perf_analyzer_env()}  # Model Analyzer's perf_analyzer runs in its environment
    started = time.perf_counter()
    with (out / "model-analyzer.log").open("w") as log:
        done = subprocess.run([str(args.model_analyzer), "profile", "-f", str(config)], cwd=out, env=env,
                              stdout=log, stderr=subprocess.STDOUT, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    print(f"Model Analyzer quick search: exit {done.returncode} in {seconds:.0f} s (log: {out / 'model-analyzer.log'})")
    summarize(out)


if __name__ == "__main__":
    main()
