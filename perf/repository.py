"""Model repositories: read one, and write copies of it for a host or a server kind.

A user's repository is only ever read. Servers run from a staged copy, so adapting it to the
host (no GPU here) or to NVIDIA's container (libtorch) never touches the original.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

from perf.modelconfig import ModelConfig, for_host, read_config, write_config
from perf.tools import project_root

TORCHSCRIPT_FILE = "model.pt"
PIXELS_MODEL_FILE = "model_pixels.pt"  # the same network taking uint8 pixels (the tuned profile's)
# Parameters read by our python-backend model.py files, meaningless to other backends.
PYTHON_BACKEND_PARAMETERS = ("torch_num_threads", "torchscript_file", "nice")


class RepositoryError(ValueError):
    """A model repository perf cannot use; the message names the fix."""


def reference_repository() -> Path:
    root = project_root()
    if root is None:
        raise RepositoryError("perf is not running from its checkout: pass --repo PATH")
    return root / "model_repo"


@dataclass(frozen=True)
class Repository:
    """A model repository on disk: folder name -> parsed config."""

    path: Path
    configs: dict[str, ModelConfig]

    @property
    def names(self) -> list[str]:
        return sorted(self.configs)

    def require(self, names: list[str]) -> None:
        """RepositoryError naming the choices when a model is not in this repository."""
        unknown = [n for n in names if n not in self.configs]
        if unknown:
            raise RepositoryError(
                f"model {', '.join(map(repr, unknown))} is not in {self.path} (it has: {', '.join(self.names)})"
            )


def open_repository(path: Path, profile: str | None = None) -> Repository:
    """Parse every model's config; each model's name must equal its folder's, as Triton requires.

    A profile is Triton's own custom model configuration: ``MODEL/configs/PROFILE.pbtxt``,
    what `tritonserver --model-config-name=PROFILE` serves; a model without that file keeps
    its config.pbtxt."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise RepositoryError(f"model repository {path} does not exist or is not a folder")
    configs = {}
    found = False
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        config_path = folder / "config.pbtxt"
        if not config_path.is_file():
            continue
        if profile and (folder / "configs" / f"{profile}.pbtxt").is_file():
            config_path, found = folder / "configs" / f"{profile}.pbtxt", True
        config = read_config(config_path)
        if config.name and config.name != folder.name:
            raise RepositoryError(
                f"{config_path}: name {config.name!r} differs from its folder {folder.name!r}; "
                "Triton would not load it: make them equal"
            )
        config.name = folder.name
        configs[folder.name] = config
    if not configs:
        raise RepositoryError(f"{path} holds no model folder with a config.pbtxt")
    if profile and not found:
        known = sorted({p.stem for p in path.glob("*/configs/*.pbtxt")})
        raise RepositoryError(
            f"no model in {path} has a profile {profile!r} (configs/{profile}.pbtxt); "
            f"profiles there: {', '.join(known) or 'none'}"
        )
    return Repository(path, configs)


def _copy(src: Path, dst: Path, ignore: list[str]) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *ignore))


def stage(repo: Repository, dst: Path, gpu_count: int, overrides: dict[str, ModelConfig] | None = None) -> Repository:
    """Copy ``repo`` to ``dst`` with every config adapted to a host with ``gpu_count`` GPUs,
    and ``overrides`` written in place of the configs they name."""
    _copy(repo.path, dst, [])
    staged = {}
    for name, config in repo.configs.items():
        staged[name] = (overrides or {}).get(name) or for_host(config, gpu_count)
        write_config(staged[name], dst / name / "config.pbtxt")
    return Repository(dst, staged)


def auto_completed(repo: Repository) -> list[str]:
    """The models whose served config Triton's auto-complete may fill in: all but ensembles and
    python-backend models that declare their inputs and outputs and whose model.py defines no
    ``auto_complete_config``. Where no model is, a server can run without auto-complete: for
    each python model it loads, it would start a stub only to ask (3.3 s of a classifier reload here)
    and change nothing. A model whose file perf cannot read is left to auto-complete."""
    return [name for name, config in repo.configs.items()
            if config.platform != "ensemble" and not _completes_nothing(repo.path / name, config)]  # fmt: skip


def _completes_nothing(folder: Path, config: ModelConfig) -> bool:
    if config.backend != "python" or not (config.input and config.output):
        return False
    files = [v / (config.default_model_filename or "model.py") for v in folder.iterdir() if v.name.isdigit()]
    try:
        trees = [ast.parse(f.read_text()) for f in files]
    except (OSError, SyntaxError, ValueError):
        return False
    defined = {n.name for tree in trees for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return bool(files) and "auto_complete_config" not in defined


def torchscript_models(repo: Repository) -> list[str]:
    """Python-backend models that only serve a TorchScript file: libtorch can serve them."""
    return [
        name
        for name, config in repo.configs.items()
        if config.backend == "python" and any((repo.path / name).glob(f"*/{TORCHSCRIPT_FILE}"))
    ]


def emit_libtorch(repo: Repository, dst: Path) -> Repository:
    """Copy ``repo`` to ``dst`` with its TorchScript models on ``platform: "pytorch_libtorch"``,
    the form NVIDIA's container serves without the python backend. Their profiles
    (``configs/*.pbtxt``) are converted too: the python stub they named is not copied, and
    `tritonserver --model-config-name=tuned` must serve the tuned profile there as here."""
    if dst.resolve() == repo.path.resolve() or repo.path.resolve() in dst.resolve().parents:
        raise RepositoryError(f"{dst} is inside the source repository {repo.path}: choose another folder")
    convert = torchscript_models(repo)
    _copy(repo.path, dst, [])
    configs = {}
    for name, source in repo.configs.items():
        config = ModelConfig()
        config.CopyFrom(source)
        if name in convert:
            _on_libtorch(config)
            for model_py in (dst / name).glob("*/model.py"):
                model_py.unlink()
            for profile in (dst / name / "configs").glob("*.pbtxt"):
                if (converted := read_config(profile)).backend == "python":  # it named the stub
                    _on_libtorch(converted)
                    write_config(converted, profile)
        # Every config is written: a profile's (configs/PROFILE.pbtxt) becomes the one served.
        write_config(config, dst / name / "config.pbtxt")
        configs[name] = config
    return Repository(dst, configs)


def _on_libtorch(config: ModelConfig) -> None:
    """``config``, written for the python stub that serves a TorchScript file, made libtorch's:
    the file served, and the stub's intra-op threads as the backend's own parameter (the
    profiles set them deliberately for shared cores). The stub's ``nice`` has no counterpart:
    libtorch runs inside Triton's process."""
    config.backend = ""
    config.platform = "pytorch_libtorch"
    if "torchscript_file" in config.parameters:
        config.default_model_filename = config.parameters["torchscript_file"].string_value
    if "torch_num_threads" in config.parameters:
        threads = config.parameters["torch_num_threads"].string_value
        config.parameters["INTRA_OP_THREAD_COUNT"].string_value = threads
    for key in PYTHON_BACKEND_PARAMETERS:
        config.parameters.pop(key, None)
