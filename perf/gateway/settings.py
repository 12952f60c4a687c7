"""The gateway's settings: defaults, ``PERF_GATEWAY_*`` environment variables, and flags.

One frozen object checked when it is made, so a wrong value stops the gateway at start with a
message naming the setting, not at the first request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from perf.repository import RepositoryError, reference_repository

ENV_PREFIX = "PERF_GATEWAY_"
MIB = 1024 * 1024


def _reference_labels() -> Path:
    try:
        return reference_repository() / "classifier" / "labels.txt"
    except RepositoryError:
        raise ValueError(
            f"perf is not running from its checkout: set {ENV_PREFIX}LABELS (or --labels) to the labels file"
        ) from None


@dataclass(frozen=True)
class Settings:
    """Where Triton is, what the gateway accepts, and how long it waits."""

    triton_url: str = "127.0.0.1:8001"
    model: str = "ensemble_model"
    labels: Path = field(default_factory=_reference_labels)
    max_files: int = 1000  # the seed's limit per request
    max_file_mb: float = 20  # a 50-megapixel JPEG is about 20 MB
    max_request_mb: float = 200
    timeout: float = 30  # seconds a request may wait on Triton, retries included
    retries: int = 2  # extra attempts after a transient gRPC failure

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be at least {low}, not {getattr(self, name)}"
            for name, low in (("max_files", 1), ("retries", 0))
            if getattr(self, name) < low
        ]
        problems += [
            f"{name} must be more than 0, not {getattr(self, name)}"
            for name in ("max_file_mb", "max_request_mb", "timeout")
            if not getattr(self, name) > 0
        ]
        if self.max_file_mb > self.max_request_mb:
            problems.append(f"max_file_mb ({self.max_file_mb}) is larger than max_request_mb ({self.max_request_mb})")
        if not self.triton_url or not self.model:
            problems.append("triton_url and model must not be empty")
        if problems:
            raise ValueError("gateway settings: " + "; ".join(problems))

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * MIB)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * MIB)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, replaced by ``PERF_GATEWAY_<NAME>`` variables, replaced by ``overrides``
        that are not None (the command's flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            variable = ENV_PREFIX + setting.name.upper()
            if overrides.get(setting.name) is not None:
                values[setting.name] = overrides[setting.name]
            elif variable in environ:
                values[setting.name] = _parse(variable, environ[variable], _CONVERTERS[setting.name])
        return cls(**values)


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "triton_url": str,
    "model": str,
    "labels": Path,
    "max_files": int,
    "max_file_mb": float,
    "max_request_mb": float,
    "timeout": float,
    "retries": int,
}


def _parse(variable: str, raw: str, convert: Callable[[str], Any]) -> Any:
    try:
        return convert(raw)
    except ValueError:
        kind = "an integer" if convert is int else "a number" if convert is float else "valid"
        raise ValueError(f"{variable}={raw!r} is not {kind}") from None
