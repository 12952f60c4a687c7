"""config.pbtxt <-> Triton's own ModelConfig protobuf, and the edits perf makes to it."""

from __future__ import annotations

import copy
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

ModelConfig = model_config_pb2.ModelConfig
KIND_CPU = model_config_pb2.ModelInstanceGroup.Kind.KIND_CPU
KIND_GPU = model_config_pb2.ModelInstanceGroup.Kind.KIND_GPU
KIND_AUTO = model_config_pb2.ModelInstanceGroup.Kind.KIND_AUTO


class ConfigError(ValueError):
    """A config.pbtxt that does not parse or does not fit the host."""


def read_config(path: Path) -> ModelConfig:
    try:
        return text_format.Parse(path.read_text(), ModelConfig())
    except text_format.ParseError as error:
        raise ConfigError(f"{path}: not a valid Triton model config: {error}") from None


def format_config(config: ModelConfig) -> str:
    return text_format.MessageToString(config)


def write_config(config: ModelConfig, path: Path) -> None:
    path.write_text(format_config(config))


def to_json(config: ModelConfig) -> str:
    """The JSON Triton's model-control API takes as a config override."""
    return json_format.MessageToJson(config, preserving_proto_field_name=True)


def from_json(text: str | dict) -> ModelConfig:
    """A config as Triton's API returns it (JSON text or the parsed dict)."""
    if isinstance(text, dict):
        return json_format.ParseDict(text, ModelConfig(), ignore_unknown_fields=True)
    return json_format.Parse(text, ModelConfig(), ignore_unknown_fields=True)


def for_host(config: ModelConfig, gpu_count: int) -> ModelConfig:
    """The config as it can run on a host with ``gpu_count`` GPUs: without GPUs, GPU instance
    groups become CPU groups of the same count (Triton would refuse to load them)."""
    adapted = copy.deepcopy(config)
    if gpu_count == 0:
        for group in adapted.instance_group:
            if group.kind in (KIND_GPU, KIND_AUTO):
                group.kind = KIND_CPU
                del group.gpus[:]
    else:
        for group in adapted.instance_group:
            if bad := [g for g in group.gpus if g >= gpu_count]:
                raise ConfigError(
                    f"model {config.name!r} asks for GPU {bad} but this host has {gpu_count} "
                    f"(0 to {gpu_count - 1}); change instance_group gpus"
                )
    return adapted
