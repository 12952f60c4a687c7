"""perf_analyzer's input data as the arrays a client sends, typed by the model's config as the
server reports it (JSON). Locust's users read it here: nothing in this module imports
``tritonclient.grpc``, for in the http locustfile's process ``import grpc`` would find the
grpc locustfile beside it (see perf.locust.names)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype


@dataclass(frozen=True)
class Tensor:
    """One input of a model: its name, numpy type and dims (-1 where variable)."""

    name: str
    dtype: Any
    dims: tuple[int, ...]


def inputs_of(config: dict[str, Any]) -> tuple[list[Tensor], bool]:
    """A model's inputs and whether it batches, from its config as Triton's API returns it."""
    tensors = [
        Tensor(i["name"], triton_to_np_dtype(i["data_type"].removeprefix("TYPE_").replace("STRING", "BYTES")),
               tuple(int(d) for d in i.get("dims", [])))
        for i in config.get("input", [])
    ]  # fmt: skip
    return tensors, int(config.get("max_batch_size", 0)) > 0


def leaves(value: Any) -> list[Any]:
    """The values of a nested list, in order."""
    return [v for item in value for v in leaves(item)] if isinstance(value, list) else [value]


def read_steps(path: Path) -> list[dict[str, Any]]:
    """An input-data file's requests, in order (a sequence's streams one after another)."""
    return flatten(json.loads(path.read_text())["data"])


def flatten(steps: list[Any]) -> list[Any]:
    """Input data's steps in order, a sequence model's streams (lists of steps) one after another."""
    return [s for step in steps for s in (step if isinstance(step, list) else [step])]


def arrays(step: dict[str, Any], tensors: list[Tensor], batching: bool) -> dict[str, np.ndarray]:
    """One step as arrays: values (a list, or ``{"content": [...], "shape": [...]}``), or
    ``{"b64": ...}`` bytes (a UINT8 tensor of them, one BYTES element, or raw values of the
    tensor's type). A batching model's arrays get the batch dimension, of 1."""
    found = {}
    for tensor in tensors:
        if tensor.name not in step:
            continue
        value = step[tensor.name]
        shape = value.get("shape") if isinstance(value, dict) else None
        if isinstance(value, dict) and "b64" in value:
            raw = base64.b64decode(value["b64"])
            bytes_ = tensor.dtype == np.object_
            array = np.array([raw], dtype=np.object_) if bytes_ else np.frombuffer(raw, dtype=tensor.dtype)
        else:
            content = value.get("content") if isinstance(value, dict) else value
            if tensor.dtype == np.object_:
                array = np.array([v.encode() if isinstance(v, str) else v for v in leaves(content)], np.object_)
            else:
                array = np.array(content, dtype=tensor.dtype)
        if shape is None and all(d >= 0 for d in tensor.dims):
            shape = tensor.dims
        array = array.reshape(shape if shape is not None else array.shape)
        found[tensor.name] = array[np.newaxis] if batching else array
    return found
