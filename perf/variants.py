"""Configs side by side: each raced config loaded at once under its own model names, so a race
measures config after config without reloading.

A reload costs more than the measurement it serves (here 1 to 4 s for the classifier, 3.6 s
for both models of the ensemble, a warm-up window and the wait for replaced instances to exit,
against 2 to 4 s of measuring). Loaded side by side, idle configs take memory but no CPU, and
a race step is the measurement alone. Model Analyzer names its variants the same way
(MODEL_config_N); here the suffix is the point's id, so a resumed run finds the same names.

The variant of a point copies every model the point changes under ``MODEL__POINT``, and every
ensemble of the plan, with its steps pointed at those copies; models the point keeps are shared.
A copy's directory links to the original's files, so nothing large is written twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from perf.modelconfig import ModelConfig, write_config
from perf.plan import Plan, Point


def name_of(model: str, point_id: str) -> str:
    return f"{model}__{point_id}"


def configs(plan: Plan, point: Point) -> dict[str, tuple[str, ModelConfig]]:
    """Each copied model's variant name and config, keyed by the model it copies: the models
    the plan changes, and its ensembles (which must call the copies)."""
    changed = plan.configs_of(point)
    ensembles = [m for m in plan.models if plan.baseline[m].platform == "ensemble"]
    copied = [m for m in plan.models if m in changed or m in ensembles]
    names = {m: name_of(m, point.id) for m in copied}
    result = {}
    for model in copied:
        config = ModelConfig()
        config.CopyFrom(changed.get(model, plan.baseline[model]))
        config.name = names[model]
        for step in config.ensemble_scheduling.step:
            step.model_name = names.get(step.model_name, step.model_name)
        result[model] = (names[model], config)
    return result


def stage(repository: Path, model: str, name: str, config: ModelConfig) -> None:
    """``repository/name``: the files of ``repository/model`` linked, and ``config`` written."""
    source, target = repository / model, repository / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for entry in source.iterdir():
        if entry.name != "config.pbtxt":
            (target / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    write_config(config, target / "config.pbtxt")
