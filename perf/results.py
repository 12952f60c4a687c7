"""The run folder: everything a sweep measured, enough to resume, report and compare.

    RUN/results.csv          one row per point x load level x repeat, one column per variable
    RUN/plan.json            what was asked (model, parameters, load), to resume the same run
    RUN/metadata.json        versions, host, GPUs, command line, times, status
    RUN/configs/POINT/MODEL/config.pbtxt   the exact config of every point
    RUN/search.json          what the search decided and why (levels found, the race)

Rows are appended whole, one write each, and flushed: a sweep killed at any moment leaves a
table that a resumed run continues without duplicating or losing a row.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from perf.modelconfig import ModelConfig, read_config, write_config

# A row's status: measured; Triton refused the variant; the server died; the measurement failed;
# the measurement did not finish by its deadline and was stopped.
OK, REFUSED, CRASHED, FAILED, TIMED_OUT = "ok", "refused", "crashed", "failed", "timed_out"
RESULTS, PLAN, METADATA, CONFIGS, SEARCH = "results.csv", "plan.json", "metadata.json", "configs", "search.json"
KEY = ("point_id", "load_level", "repeat")
_APPENDING = threading.Lock()


class RunError(ValueError):
    """A run folder that cannot be used as asked."""


def encode(value: Any) -> str:
    """A cell: lists and mappings as JSON so the table stays one value per cell."""
    if value is None:
        return ""
    if isinstance(value, list | dict | bool):
        return json.dumps(value)
    return str(value)


@dataclass
class RunFolder:
    path: Path
    columns: list[str]

    @classmethod
    def open(cls, path: Path, plan: dict[str, Any], columns: list[str]) -> RunFolder:
        """Create the folder, or reopen it to resume when it holds the same plan."""
        path = path.expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} exists and is not a folder")
        plan_path = path / PLAN
        if plan_path.is_file():
            recorded = json.loads(plan_path.read_text())
            if recorded != plan:
                changed = sorted(k for k in set(recorded) | set(plan) if recorded.get(k) != plan.get(k))
                raise RunError(
                    f"{path} holds a run with a different plan ({', '.join(changed)} differ): "
                    "choose another --out, or run the original command to resume it"
                )
            header = (path / RESULTS).read_text().splitlines()[0]
            if next(csv.reader([header])) != columns:
                raise RunError(f"{path / RESULTS} has other columns than this version of perf writes")
        elif path.is_dir() and any(path.iterdir()):
            raise RunError(f"{path} is not empty and holds no sweep: choose another --out")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / RESULTS).write_text(_line(columns))
            plan_path.write_text(json.dumps(plan, indent=2))
        return cls(path, columns)

    def rows_by_key(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        """Every recorded row by its key (point, load level, repeat), for a resumed run."""
        table = self.table().astype(object).where(lambda t: t.notna(), None)
        return {(str(r["point_id"]), str(r["load_level"]), int(r["repeat"])): r for r in table.to_dict("records")}

    def append(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise RunError(f"row has columns the table does not: {sorted(unknown)}")
        with _APPENDING:  # several servers' rows, one whole line at a time
            fd = os.open(self.path / RESULTS, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, _line([encode(row.get(c)) for c in self.columns]).encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def table(self) -> pd.DataFrame:
        """The results so far; a last line cut short by a kill is not a row."""
        text = (self.path / RESULTS).read_text()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        return pd.read_csv(io.StringIO(text), dtype={"point_id": str, "load_level": str})

    def write_configs(self, point_id: str, configs: dict[str, ModelConfig]) -> None:
        for model, config in configs.items():
            target = self.path / CONFIGS / point_id / model / "config.pbtxt"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_config(config, target)

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        self._write_json(METADATA, metadata)

    def write_search(self, record: dict[str, Any]) -> None:
        self._write_json(SEARCH, record)

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        """Whole or not at all: a temporary file renamed over the old one."""
        tmp = self.path / (name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.path / name)

    def metadata(self) -> dict[str, Any]:
        path = self.path / METADATA
        return json.loads(path.read_text()) if path.is_file() else {}


def _line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


@dataclass(frozen=True)
class Run:
    """A sweep read back, finished or not: for reports, comparisons and notebooks."""

    path: Path
    table: pd.DataFrame
    plan: dict[str, Any]
    metadata: dict[str, Any]
    search: dict[str, Any] = field(default_factory=dict)  # search.json: levels found, the race

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str:
        return self.plan["model"]

    @property
    def param_columns(self) -> list[str]:
        return list(self.plan["params"])

    @property
    def models(self) -> list[str]:
        """The swept model and, for an ensemble, its composing models."""
        return [c.removesuffix(".requests") for c in self.table.columns if c.endswith(".requests")]

    def configs(self, point_id: str) -> dict[str, ModelConfig]:
        """The exact configs a point ran with, per model it changes."""
        folder = self.path / CONFIGS / point_id
        return {p.parent.name: read_config(p) for p in sorted(folder.glob("*/config.pbtxt"))}


def read_run(path: Path) -> Run:
    """A run folder as written by `perf sweep`, checked to be one."""
    path = Path(path).expanduser().resolve()
    missing = [name for name in (RESULTS, PLAN) if not (path / name).is_file()]
    if missing:
        raise RunError(f"{path} is not a sweep's run folder (no {' or '.join(missing)}): give the --out of a sweep")
    folder = RunFolder(path, [])
    search = json.loads((path / SEARCH).read_text()) if (path / SEARCH).is_file() else {}
    return Run(path, folder.table(), json.loads((path / PLAN).read_text()), folder.metadata(), search)
