"""`perf apply RUN`: the recommended config written into the user's model repository, only
when asked, after the diff is shown, with the original kept beside it.

The new file is the repository's own config with the winner's swept values set (and, for an
ensemble, the same follow-up the sweep made), not the config as it ran on this host: a
sweep on a machine without GPUs runs KIND_GPU groups as KIND_CPU, and that must not leak
into the repository. Only the settings that change are rewritten; the user's comments and
layout stay.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf import params, plan
from perf.findings import Findings
from perf.modelconfig import edit_text, format_config, read_config
from perf.repository import open_repository
from perf.results import Run


class ApplyError(ValueError):
    """Nothing can be applied as asked."""


@dataclass(frozen=True)
class Change:
    model: str
    path: Path  # the file to write: config.pbtxt, or a profile's configs/PROFILE.pbtxt
    before: str  # its text now; for a profile file not written yet, the config.pbtxt it starts from
    after: str
    exists: bool = True

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                f"{self.path} (now)" if self.exists else f"{self.path.parent.parent / 'config.pbtxt'} (its start)",
                f"{self.path} (recommended)",
            )
        )


def winner_values(findings: Findings) -> dict[str, Any]:
    """The recommended point's swept values, typed as the sweep used them; a tied column whose
    models differ (the baseline's) has ``{model: value}``."""
    best = findings.recommendation.best
    if best is None:
        slo = findings.slo_p99_ms
        raise ApplyError(f"no config of {findings.run.path} meets p99 <= {slo:g} ms: nothing to apply")
    row = findings.run.table[findings.run.table["point_id"] == best.point_id].iloc[0]
    values = {}
    for column in findings.run.param_columns:
        param = _param(column, findings.run)
        value = params.parse_value(str(row[column]))
        if _per_model(param, value):
            values[column] = {m: params.coerce(param.path, v) for m, v in value.items()}
        else:
            values[column] = params.coerce(param.path, value)
    return values


def changes(findings: Findings, repo_path: Path, profile: str | None = None) -> list[Change]:
    """What would change in ``repo_path``: one entry per file whose text differs. With a
    profile, the files are MODEL/configs/PROFILE.pbtxt, started from config.pbtxt where a
    model has none yet."""
    repo = open_repository(repo_path)
    run = findings.run
    repo.require(run.models)
    targets = {m: repo.path / m / "configs" / f"{profile}.pbtxt" if profile else repo.path / m / "config.pbtxt"
               for m in run.models}  # fmt: skip
    current = {m: read_config(t) if t.is_file() else repo.configs[m] for m, t in targets.items()}
    assignment: list[tuple[plan.Param, Any]] = []
    for column, value in winner_values(findings).items():
        param = _param(column, run)
        if _per_model(param, value):
            assignment += [(plan.Param(m, param.path, (v,)), v) for m, v in value.items()]
        else:
            assignment.append((param, value))
    # An ensemble's steps bound its max_batch_size; the models a BLS model calls (--load) do not.
    calls = set(run.plan.get("calls", []))
    members = [m for m in run.models[1:] if m not in calls] if plan.is_ensemble(current[run.model]) else []
    point = plan.make_point(assignment, current, run.model, members)
    result = []
    for model, config in point.configs.items():
        target = targets[model]
        exists = target.is_file()
        before = (target if exists else repo.path / model / "config.pbtxt").read_text()
        if not exists or format_config(current[model]) != format_config(config):
            result.append(Change(model, target, before, edit_text(before, config), exists))
    return result


def write(changes_: list[Change], now: dt.datetime | None = None) -> list[Path | None]:
    """Each existing file saved as NAME.TIMESTAMP.bak beside it, then the new text written
    whole (a temporary file renamed over it): a crash leaves one or the other. A profile
    file written for the first time has no backup (None)."""
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    backups: list[Path | None] = []
    for change in changes_:
        backup = None
        if change.exists:
            backup = change.path.with_name(f"{change.path.name}.{stamp}.bak")
            backup.write_text(change.before)
        change.path.parent.mkdir(exist_ok=True)
        tmp = change.path.with_name(f"{change.path.name}.tmp")
        tmp.write_text(change.after)
        os.replace(tmp, change.path)
        backups.append(backup)
    return backups


def _param(column: str, run: Run) -> plan.Param:
    """The setting a column names (without values). A tied column, a bare name on an ensemble,
    sets the models the run's plan lists for it; ``classifier.dynamic_batching.preferred_batch_size``
    is (classifier, the field path): model names may hold dots, so the longest model name that
    prefixes the column wins."""
    if targets := run.plan.get("targets", {}).get(column):
        return plan.Param(run.model, column, (), tuple(targets))
    for model in sorted(run.models, key=len, reverse=True):
        if column.startswith(model + "."):
            return plan.Param(model, column.removeprefix(model + "."), ())
    raise ApplyError(f"column {column!r} names none of the run's models {run.models}")


def _per_model(param: plan.Param, value: Any) -> bool:
    """Whether a tied column's value is one per model: the baseline's, where they differed."""
    return bool(param.targets) and isinstance(value, dict) and set(value) == set(param.targets)
