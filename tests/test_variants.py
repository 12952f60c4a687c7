"""Configs side by side (perf/variants.py): the copies a race loads at once, as pure functions
and on disk; the sweep tests race on them against the real server."""

from __future__ import annotations

from pathlib import Path

from perf import plan, variants
from perf.modelconfig import read_config
from perf.repository import open_repository, stage

from .conftest import REPO

repo = open_repository(REPO)


def test_a_point_copies_the_models_it_changes_and_the_ensemble_that_calls_them() -> None:
    p = plan.build("ensemble_model", [("classifier.instance_count", ["1", "2"])], repo, 0, 2)
    point = p.points[1]
    copies = variants.configs(p, point)
    assert set(copies) == {"classifier", "ensemble_model"}, "the preprocessor is kept, so shared"
    name, config = copies["classifier"]
    assert name == f"classifier__{point.id}" and config.name == name
    assert config.instance_group[0].count == 2
    steps = {s.model_name for s in copies["ensemble_model"][1].ensemble_scheduling.step}
    assert steps == {"preprocessor", name}, "the ensemble calls the copy, and the shared original"
    assert [s.model_name for s in p.baseline["ensemble_model"].ensemble_scheduling.step] == [
        "preprocessor",
        "classifier",
    ]


def test_copies_of_two_points_have_different_names() -> None:
    p = plan.build("classifier", [("max_batch_size", ["8", "16"]), ("preferred_batch_size", ["[]"])], repo, 0, 2)
    names = {variants.configs(p, point)["classifier"][0] for point in p.points}
    assert len(names) == 2


def test_a_staged_copy_links_the_files_and_has_its_own_config(tmp_path: Path) -> None:
    staged = stage(repo, tmp_path / "repository", 0)
    p = plan.build("classifier", [("max_batch_size", ["8"]), ("preferred_batch_size", ["[]"])], repo, 0, 2)
    name, config = variants.configs(p, p.points[0])["classifier"]
    variants.stage(staged.path, "classifier", name, config)
    copy = staged.path / name
    assert read_config(copy / "config.pbtxt").max_batch_size == 8
    assert read_config(staged.path / "classifier" / "config.pbtxt").max_batch_size != 8, "the original is kept"
    version = copy / "1"
    assert version.is_symlink() and version.resolve() == (staged.path / "classifier" / "1").resolve()
    variants.stage(staged.path, "classifier", name, config)  # again (a resumed race): replaced, not an error
    assert (copy / "config.pbtxt").is_file()
