"""On a host with NVIDIA GPUs: perf finds them with nvidia-smi, and a sweep planned there keeps
the repository's KIND_GPU, tries GPU values and refuses a GPU the host lacks, where a host
without one runs KIND_GPU as KIND_CPU and says so. Skipped where nvidia-smi lists no GPU (CI,
this project's machines); run on a lent GPU machine, as bench/RESULTS.md records. Plans only:
perf's setup installs the CPU build of Triton, so no server runs here."""

from __future__ import annotations

import subprocess
import sys

import pytest
from google.protobuf import text_format

from perf import host, plan
from perf.modelconfig import KIND_GPU, ModelConfig
from perf.repository import Repository, open_repository, reference_repository
from perf.space import INSTANCES_PER_GPU, powers_of_two

GPUS = host.gpus()
pytestmark = pytest.mark.skipif(not GPUS, reason="nvidia-smi lists no GPU on this host")


def test_the_gpus_are_those_nvidia_smi_lists() -> None:
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    assert GPUS[0].startswith("GPU 0: ") and all(gpu in listed for gpu in GPUS)


def test_the_sweep_as_typed_plans_gpu_kinds_and_counts_on_the_gpu() -> None:
    """`perf sweep --model classifier --param kind --param instance_count --dry-run`: KIND_GPU
    among the kinds, instance counts up to four a GPU (and one a core for KIND_CPU), and no note that the
    GPU config runs on the CPU."""
    argv = ["sweep", "--model", "classifier", "--param", "kind", "--param", "instance_count", "--dry-run"]
    out = subprocess.run([sys.executable, "-m", "perf", *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "KIND_GPU" in out.stdout and "runs as KIND_CPU" not in out.stdout, out.stdout
    repo = open_repository(reference_repository(), None)
    the_plan = plan.build("classifier", [("kind", None), ("instance_count", None)], repo, len(GPUS), host.cores())
    groups = [p.configs["classifier"].instance_group[0] for p in the_plan.points]
    on_gpu = {g.count for g in groups if g.kind == KIND_GPU}
    on_cpu = {g.count for g in groups if g.kind != KIND_GPU}
    # A GPU group's count is instances on each GPU; a CPU group's, instances in all.
    assert on_gpu == set(powers_of_two(1, INSTANCES_PER_GPU)), on_gpu
    assert on_cpu == set(powers_of_two(1, max(2, host.cores()))), on_cpu
    assert not the_plan.notes, the_plan.notes


def test_a_gpu_the_host_lacks_is_refused_by_its_index() -> None:
    config = text_format.Parse(
        'name: "m" backend: "onnxruntime" max_batch_size: 8 instance_group [ { kind: KIND_GPU count: 1 gpus: [ 0 ] } ]',
        ModelConfig(),
    )
    repo = Repository(reference_repository(), {"m": config})
    missing = str(len(GPUS))
    with pytest.raises(plan.PlanError) as refused:
        plan.build("m", [("gpus", [f"[{missing}]"])], repo, len(GPUS), host.cores())
    assert f"gpus [{missing}] do not exist (this host has {len(GPUS)})" in str(refused.value)
    assert plan.build("m", [("gpus", ["[0]"])], repo, len(GPUS), host.cores()).points
