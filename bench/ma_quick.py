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
Triton for every config. Printed: wall time, configs measured, its best config and its
throughput under the SLO, from Model Analyzer's own results table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf import images, tools
from perf.drivers.perf_analyzer import write_input_data
from perf.repository import open_repository, stage

ROOT = Path(__file__).resolve().parent.parent


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
        "constraints": {"perf_latency_p99": {"max": 50}},
        "objectives": ["perf_throughput"],
        "skip_summary_reports": True,
    }
    path = out / "profile.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-analyzer", type=Path, required=True, help="the model-analyzer command")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ma-quick")
    args = parser.parse_args()
    out = args.out.resolve()
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
    table = out / "export" / "results" / "metrics-model-inference.csv"
    if not table.is_file():
        sys.exit("no results table: see the log")
    rows = pd.read_csv(table)
    print(f"{rows['Model Config Path'].nunique()} configs, {len(rows)} measurements")
    within = rows[rows["p99 Latency (ms)"] <= 50].sort_values("Throughput (infer/sec)", ascending=False)
    print(within.head(5).to_string(index=False))


if __name__ == "__main__":
    main()
