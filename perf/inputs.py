"""What a sweep's requests carry: the user's own data (``--input-data``), encoded images for a
model that takes them (``--images``, or a generated set), or perf_analyzer's random data.

Random bytes stand for an image classifier's tensors, not for every model: a string that
names the model a BLS model calls, or a count that tells a decoupled model how many responses
to send, means something. perf cannot invent those, so a model with such inputs is refused
before anything starts unless the user gives the data; every problem is named at once.

``--input-data`` takes perf_analyzer's JSON input-data format (the file Model Analyzer users
already have), a folder of such files (their steps in turn), or a folder of raw payloads for a
one-input model (each file one request). Whatever it is, the sweep writes one JSON file of it
into the run folder, the file every driver and every server of the run sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tritonclient.grpc.model_config_pb2 import DataType

from perf.drivers.perf_analyzer import payload, write_input_data
from perf.images import IMAGE_SUFFIXES, image_files, synthetic_set
from perf.modelconfig import ModelConfig
from perf.tensors import flatten, leaves

TYPE_UINT8, TYPE_STRING = DataType.TYPE_UINT8, DataType.TYPE_STRING  # encoded payloads; strings (BYTES)
FLOATS = (DataType.TYPE_FP16, DataType.TYPE_FP32, DataType.TYPE_FP64, DataType.TYPE_BF16)
GENERATED_IMAGES, RANDOM = "generated images", "random"  # a row's input_data when the user gave none


class InputDataError(ValueError):
    """Data that cannot feed the model; the message names the file and the fix."""


def takes_payloads(config: ModelConfig) -> bool:
    """Whether a model takes one encoded payload a request (one UINT8 or BYTES input), as the
    reference ensemble takes a JPEG: a folder of files then is its data."""
    return len(config.input) == 1 and config.input[0].data_type in (TYPE_UINT8, TYPE_STRING)


def takes_images(config: ModelConfig) -> bool:
    """Whether a model takes encoded images: one UINT8 input, as the reference ensemble does."""
    return len(config.input) == 1 and config.input[0].data_type == TYPE_UINT8


def is_image_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of JPEG or PNG files only: data Locust's users send too."""
    files = [f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")] if path.is_dir() else []
    return bool(files) and all(f.suffix.lower() in IMAGE_SUFFIXES for f in files)


def problems(config: ModelConfig, data: Path | None, images: Path | None) -> list[str]:
    """Why the requests could not carry what ``config``'s inputs need: data that does not fit
    the model, or inputs perf cannot make up with no data given."""
    found = []
    if data is not None and images is not None:
        found.append("give --input-data or --images, not both (a folder of images is --input-data too)")
    if images is not None and not takes_images(config):
        found.append(f"--images: {config.name} does not take encoded images (its input is not one UINT8 tensor); "
                     "give its requests' inputs with --input-data FILE")  # fmt: skip
    if data is not None:
        try:
            steps(data, config)
        except InputDataError as error:
            found.append(str(error))
        return found
    strings = [i.name for i in config.input if i.data_type == TYPE_STRING]
    if strings and not takes_payloads(config):
        found.append(f"input {', '.join(strings)} of {config.name} is TYPE_STRING: perf cannot make up meaningful "
                     "values for it (a model name, a prompt); give the requests' inputs with --input-data FILE "
                     "(perf_analyzer's JSON input-data format)")  # fmt: skip
    return found


def steps(data: Path, config: ModelConfig) -> list[Any]:
    """The requests' inputs, perf_analyzer's ``data`` list, from a JSON file, a folder of them,
    or a folder of raw payloads; InputDataError where they cannot feed ``config``."""
    if not data.exists():
        raise InputDataError(f"--input-data {data}: no such file or folder")
    if data.is_dir():
        files = sorted(f for f in data.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise InputDataError(f"--input-data {data}: the folder is empty")
        if all(f.suffix == ".json" for f in files):
            found = [step for f in files for step in _json_steps(f)]
        elif takes_payloads(config):
            found = [_payload(config, f.read_bytes()) for f in files]
        else:
            raise InputDataError(f"--input-data {data}: a folder of raw payloads feeds a model of one UINT8 or "
                                 f"STRING input, and {config.name} takes {len(config.input)} inputs; give a JSON "
                                 "file in perf_analyzer's input-data format")  # fmt: skip
    else:
        found = _json_steps(data)
    _check(found, config, data)
    return found


def _json_steps(path: Path) -> list[Any]:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputDataError(f"--input-data {path}: not perf_analyzer's JSON input data ({error})") from None
    found = content.get("data") if isinstance(content, dict) else None
    if not isinstance(found, list) or not found:
        raise InputDataError(f'--input-data {path}: expected {{"data": [{{"INPUT": [...]}}, ...]}} with at '
                             "least one step (perf_analyzer's input-data format)")  # fmt: skip
    return found


def _check(found: list[Any], config: ModelConfig, source: Path) -> None:
    """Every step (or each stream's steps, for a sequence model) names only the model's inputs,
    and every input the model does not mark optional."""
    names = {i.name for i in config.input}
    required = {i.name for i in config.input if not i.optional}
    for i, step in enumerate(flatten(found)):
        if not isinstance(step, dict):
            raise InputDataError(f"--input-data {source}: step {i} is not a mapping of input name to value")
        if unknown := sorted(set(step) - names):
            raise InputDataError(f"--input-data {source}: step {i} names {', '.join(unknown)}, which "
                                 f"{config.name} has no input of (its inputs: {', '.join(sorted(names))})")  # fmt: skip
        if missing := sorted(required - set(step)):
            raise InputDataError(f"--input-data {source}: step {i} gives no {', '.join(missing)}, an input "
                                 f"{config.name} needs")  # fmt: skip
        for tensor in config.input:
            value = step.get(tensor.name)
            values = value.get("content") if isinstance(value, dict) else value
            if tensor.data_type in FLOATS and any(type(v) is int for v in leaves(values)):
                raise InputDataError(f"--input-data {source}: step {i} gives {tensor.name} whole numbers, and "
                                     f"perf_analyzer reads {DataType.Name(tensor.data_type)} data only from "
                                     "numbers written with a decimal point (1.0, not 1)")  # fmt: skip


def _payload(config: ModelConfig, blob: bytes) -> dict[str, Any]:
    """One request of one payload: bytes for a UINT8 input, one string element for BYTES."""
    tensor = config.input[0]
    return {tensor.name: payload(blob, [len(blob)] if tensor.data_type == TYPE_UINT8 else [1])}


def write(path: Path, config: ModelConfig, data: Path | None, images: Path | None) -> Path | None:
    """The run's input-data file for ``config`` (written once; a resumed run keeps its own), or
    None where perf_analyzer's random data will do."""
    if path.is_file():
        return path
    if data is not None:
        found = steps(data, config)
    elif takes_images(config):
        blobs = [f.read_bytes() for f in image_files(images)] if images else synthetic_set(32, seed=0)[0]
        return write_input_data(blobs, path, config.input[0].name)  # 640x480 JPEGs, as a camera sends them
    else:
        return None
    path.write_text(json.dumps({"data": found}))
    return path


def describe(config: ModelConfig, data: Path | None, images: Path | None) -> str:
    """Which data measured a row, for its ``input_data`` column."""
    if data is not None or images is not None:
        return str(data or images)
    return GENERATED_IMAGES if takes_images(config) else RANDOM
