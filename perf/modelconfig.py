"""config.pbtxt <-> Triton's own ModelConfig protobuf, and the edits perf makes to it."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

ModelConfig = model_config_pb2.ModelConfig
ModelInstanceGroup = model_config_pb2.ModelInstanceGroup
KIND_CPU = ModelInstanceGroup.Kind.KIND_CPU
KIND_GPU = ModelInstanceGroup.Kind.KIND_GPU
KIND_AUTO = ModelInstanceGroup.Kind.KIND_AUTO
KIND_MODEL = ModelInstanceGroup.Kind.KIND_MODEL


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


# A config.pbtxt token: blanks, comments, strings, names, numbers, punctuation.
_TOKEN = re.compile(
    r"""(?P<skip>\s+|\#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    r"""|(?P<word>[\w.+-]+)|(?P<punct>[{}\[\]<>:,;])"""
)
_OPEN, _CLOSE = "{[<", "}]>"


def _top_level_fields(text: str) -> list[tuple[str, int, int]]:
    """(field name, start, end) of every top-level field in ``text``, each span running from
    its line's start to the end of its value's line, so that lines around it are untouched."""
    tokens = [(m.lastgroup, m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text) if m.lastgroup != "skip"]
    spans, i = [], 0
    while i < len(tokens):
        _, name, start, _ = tokens[i]
        i += 1
        if i < len(tokens) and tokens[i][1] == ":":
            i += 1
        depth = 0
        while i < len(tokens):
            value = tokens[i][1]
            depth += (value in _OPEN) - (value in _CLOSE)
            i += 1
            if depth == 0 and not (i < len(tokens) and tokens[i][0] == "string" and tokens[i - 1][0] == "string"):
                break
        end = tokens[i - 1][3]
        while i < len(tokens) and tokens[i][1] in ",;":
            end = tokens[i][3]
            i += 1
        line_start = text.rfind("\n", 0, start) + 1
        if text[line_start:start].strip():
            line_start = start
        line_end = text.find("\n", end)
        line_end = len(text) if line_end == -1 else line_end + 1
        if text[end:line_end].strip() and not text[end:line_end].strip().startswith("#"):
            line_end = end
        spans.append((name, line_start, line_end))
    return spans


def _field_text(config: ModelConfig, name: str) -> str:
    only = copy.deepcopy(config)
    for field in ModelConfig.DESCRIPTOR.fields:
        if field.name != name:
            only.ClearField(field.name)
    return format_config(only)


def edit_text(text: str, config: ModelConfig) -> str:
    """``text`` (a config.pbtxt) changed to say ``config``, touching only the top-level fields
    that differ: comments, layout and the other fields stay as the user wrote them. Where
    that cannot be done faithfully, the whole config is written, after the file's leading
    comments."""
    current = text_format.Parse(text, ModelConfig())
    spans = _top_level_fields(text)
    edits = []  # (start, end, replacement)
    for field in ModelConfig.DESCRIPTOR.fields:
        wanted = _field_text(config, field.name)
        if wanted == _field_text(current, field.name):
            continue
        own = [(s, e) for name, s, e in spans if name == field.name]
        if own:
            edits.append((*own[0], wanted))
            edits.extend((s, e, "") for s, e in own[1:])
        else:
            edits.append((len(text), len(text), ("" if text.endswith("\n") else "\n") + wanted))
    edited = text
    for start, end, replacement in sorted(edits, reverse=True):
        edited = edited[:start] + replacement + edited[end:]
    try:
        if format_config(text_format.Parse(edited, ModelConfig())) == format_config(config):
            return edited
    except text_format.ParseError:
        pass
    header = "".join(line for line in text.splitlines(keepends=True)[: _header_length(text)])
    return header + format_config(config)


def _header_length(text: str) -> int:
    lines = text.splitlines()
    return next((i for i, line in enumerate(lines) if not line.lstrip().startswith("#")), len(lines))
