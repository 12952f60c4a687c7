"""The gateway's settings: defaults, ``PERF_GATEWAY_*`` environment variables, and flags.

pydantic-settings reads and converts the environment; ``Settings.load`` puts the command's
flags above it and turns pydantic's errors into one message naming every bad setting and its
value, so a wrong value stops the gateway at start, not at the first request.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from perf.repository import RepositoryError, reference_repository

ENV_PREFIX = "PERF_GATEWAY_"
MIB = 1024 * 1024
# pydantic's error types for a value of the wrong kind, in the words a user reads.
KINDS = {"int_parsing": "an integer", "int_from_float": "an integer", "float_parsing": "a number"}


def _reference_labels() -> Path:
    try:
        return reference_repository() / "classifier" / "labels.txt"
    except RepositoryError:
        raise ValueError(
            f"perf is not running from its checkout: set {ENV_PREFIX}LABELS (or --labels) to the labels file"
        ) from None


class Settings(BaseSettings):
    """Where Triton is, what the gateway accepts, and how long it waits. Frozen: every request
    of a running gateway sees the same values."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    triton_url: str = Field("127.0.0.1:8001", min_length=1)
    model: str = Field("ensemble_model", min_length=1)
    labels: Path = Field(default_factory=_reference_labels)
    max_files: int = Field(1000, ge=1)  # the seed's limit per request
    max_file_mb: float = Field(20, gt=0)  # a 50-megapixel JPEG is about 20 MB
    max_request_mb: float = Field(200, gt=0)
    timeout: float = Field(30, gt=0)  # seconds a request may wait on Triton, retries included
    retries: int = Field(2, ge=0)  # extra attempts after a transient gRPC failure

    @model_validator(mode="after")
    def _file_fits_request(self) -> Self:
        if self.max_file_mb > self.max_request_mb:
            raise ValueError(f"max_file_mb ({self.max_file_mb}) is larger than max_request_mb ({self.max_request_mb})")
        return self

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * MIB)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * MIB)

    @classmethod
    def load(cls, **flags: Any) -> Settings:
        """Defaults, replaced by ``PERF_GATEWAY_<NAME>`` variables, replaced by the ``flags``
        that are not None; ValueError naming every setting that is wrong, and its value."""
        given = {name: value for name, value in flags.items() if value is not None}
        try:
            return cls(**given)
        except ValidationError as error:
            problems = [_problem(detail, flags=given.keys()) for detail in error.errors()]
            raise ValueError("gateway settings: " + "; ".join(problems)) from None


def _problem(detail: ErrorDetails, flags: Collection[str]) -> str:
    """One of pydantic's errors as a user reads it: the setting (the variable, for a value read
    from the environment), the rule it breaks and the value it had."""
    if not detail["loc"]:  # a check across settings: its own message says it all
        return str(detail.get("ctx", {}).get("error", detail["msg"]))
    name = str(detail["loc"][0])
    value = detail["input"]
    ctx = detail.get("ctx", {})
    if detail["type"] == "greater_than_equal":
        return f"{name} must be at least {ctx['ge']:g}, not {value}"
    if detail["type"] == "greater_than":
        return f"{name} must be more than {ctx['gt']:g}, not {value}"
    if detail["type"] == "string_too_short":
        return f"{name} must not be empty"
    kind = KINDS.get(detail["type"], "valid")
    where = name if name in flags else ENV_PREFIX + name.upper()
    return f"{where}={value!r} is not {kind}"
