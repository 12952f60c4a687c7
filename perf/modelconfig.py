"""config.pbtxt <-> Triton's own ModelConfig protobuf, and the edits perf makes to it."""

from __future__ import annotations

import copy
import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
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


# Editing a config.pbtxt in place. text_format keeps no comments and no layout, and no Python
# library edits protobuf text that way (Google's txtpbfmt does, in Go), so the text is
# tokenized here into fields with their offsets: enough to replace what changes and no more.

# A config.pbtxt token: blanks, comments, strings, names, numbers, punctuation.
_TOKEN = re.compile(
    r"""(?P<skip>\s+|\#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    r"""|(?P<word>[\w.+-]+)|(?P<punct>[{}\[\]<>:,;])"""
)
_CLOSING = {"{": "}", "<": ">"}


@dataclass
class _Block:
    """A message as written: its fields, and the text between its braces (the root's is the file)."""

    fields: list[_Field]
    start: int  # just after the opening brace
    close: int  # the closing brace


@dataclass
class _Value:
    """One value as written: a scalar's token(s), or a message's braces and fields."""

    start: int
    end: int
    block: _Block | None = None


@dataclass
class _Field:
    """One occurrence of a field: ``name: value``, ``name { ... }`` or ``name: [ v, v ]``."""

    name: str
    start: int
    end: int  # after its value and the "," or ";" that may end it
    values: list[_Value]
    brackets: tuple[int, int] | None = None  # the [ ] around its values, if written so


def _parse(text: str) -> _Block:
    """The fields of a config.pbtxt with the offsets of their text. Only for text that
    text_format already accepted: it checks nothing."""
    tokens = [m for m in _TOKEN.finditer(text) if m.lastgroup != "skip"]
    i = 0

    def block(start: int, closing: str | None) -> _Block:
        nonlocal i
        fields = []
        while i < len(tokens) and tokens[i].group() != closing:
            name = tokens[i]
            i += 1 + (tokens[i + 1].group() == ":")
            brackets = None
            if tokens[i].group() == "[":
                opening, values = tokens[i], []
                i += 1
                while tokens[i].group() != "]":
                    values.append(value())
                    i += tokens[i].group() == ","
                brackets = (opening.start(), tokens[i].end())
                i += 1
            else:
                values = [value()]
            end = tokens[i - 1].end()
            if i < len(tokens) and tokens[i].group() in ",;":
                end = tokens[i].end()
                i += 1
            fields.append(_Field(name.group(), name.start(), end, values, brackets))
        return _Block(fields, start, tokens[i].start() if closing else len(text))

    def value() -> _Value:
        nonlocal i
        first = tokens[i]
        i += 1
        if first.group() in _CLOSING:
            inner = block(first.end(), _CLOSING[first.group()])
            i += 1
            return _Value(first.start(), inner.close + 1, inner)
        while first.lastgroup == "string" and i < len(tokens) and tokens[i].lastgroup == "string":
            i += 1  # "adjacent" "strings" are one value
        return _Value(first.start(), tokens[i - 1].end())

    return block(0, None)


def edit_text(text: str, config: ModelConfig) -> str:
    """``text`` (a config.pbtxt) changed to say ``config``, touching only the innermost fields
    that differ: a scalar's value, a list of scalars, a field added to its block or a removed
    field's line. Comments, layout and every other field stay as the user wrote them, so that
    `perf apply` shows a diff of the settings it changes and nothing else. Where that cannot
    be done faithfully (the edited text would not parse to ``config``), the whole config is
    written, after the file's leading comments."""
    current = text_format.Parse(text, ModelConfig())
    try:
        edits: list[tuple[int, int, str]] = []
        _edit_block(text, _parse(text), current, config, edits)
        edited = _apply(text, edits)
        if format_config(text_format.Parse(edited, ModelConfig())) == format_config(config):
            return edited
    except (IndexError, ValueError, text_format.ParseError):
        pass
    header = "".join(line for line in text.splitlines(keepends=True)[: _header_length(text)])
    return header + format_config(config)


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, replacement) made, from the last to the first."""
    edits = sorted(edits)
    if any(a[1] > b[0] for a, b in itertools.pairwise(edits)):
        raise ValueError("overlapping edits")
    for start, end, replacement in reversed(edits):
        text = text[:start] + replacement + text[end:]
    return text


def _edit_block(text: str, block: _Block, old: Message, new: Message, edits: list) -> None:
    """Add to ``edits`` what makes ``block`` (the text of ``old``) say ``new``, recursing into
    the messages written in it (a repeated one's elements matched by position, a map's entries
    by key) so that only the fields that differ are rewritten."""
    added: list[str] = []  # fields to write at the block's end
    for field in new.DESCRIPTOR.fields:
        if not _differs(old, new, field):
            continue
        written = [f for f in block.fields if f.name == field.name]
        if not written:
            added.append(field.name)
        elif _is_map(field):
            _edit_map(text, written, old, new, field, edits)
        elif field.message_type is not None and field.is_repeated:
            _edit_elements(text, written, getattr(old, field.name), new, field.name, edits)
        elif field.message_type is not None:
            if new.HasField(field.name):
                _edit_block(text, written[0].values[0].block, getattr(old, field.name), getattr(new, field.name), edits)
            else:
                _remove(text, written, edits)
        elif field.is_repeated:
            _edit_scalars(text, written, field, list(getattr(new, field.name)), edits)
        elif field.has_presence and not new.HasField(field.name):
            _remove(text, written, edits)
        else:
            value = written[0].values[0]
            edits.append((value.start, value.end, _scalar(field, getattr(new, field.name))))
    if added:
        edits.append(_insertion(text, block, new, added))


def _differs(old: Message, new: Message, field: FieldDescriptor) -> bool:
    a, b = getattr(old, field.name), getattr(new, field.name)
    if _is_map(field):
        return dict(a) != dict(b)
    if field.is_repeated:
        return list(a) != list(b)
    return (field.has_presence and old.HasField(field.name) != new.HasField(field.name)) or a != b


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _edit_elements(text: str, written: list[_Field], olds, new: Message, name: str, edits: list) -> None:
    """A repeated message (``instance_group``) edited element by element, matched by position,
    or, where elements were only taken out, the remaining ones with their own; the elements
    left without a match removed, new ones written after the last."""
    news = getattr(new, name)
    values = [v for f in written for v in f.values]
    kept = _subsequence(olds, news) or range(min(len(olds), len(news)))
    for i, b in zip(kept, news, strict=False):
        if olds[i] != b:
            _edit_block(text, values[i].block, olds[i], b, edits)
    _drop(text, written, [v for i, v in enumerate(values) if i not in kept], edits)
    if len(news) > len(olds):
        edits.append(_append(text, written[-1], list(news)[len(olds) :]))


def _subsequence(olds, news) -> list[int] | None:
    """Where the elements of ``news`` are in ``olds`` when it is ``olds`` less some elements."""
    found: list[int] = []
    for i, old in enumerate(olds):
        if len(found) < len(news) and old == news[len(found)]:
            found.append(i)
    return found if len(found) == len(news) < len(olds) else None


def _edit_map(text: str, written: list[_Field], old: Message, new: Message, field: FieldDescriptor,
              edits: list) -> None:  # fmt: skip
    """A map (``parameters``) edited entry by entry, each entry found by its key."""
    places: dict[str, list[_Value]] = {}
    for value in (v for f in written for v in f.values):
        key = text_format.Parse(text[value.block.start : value.block.close], field.message_type._concrete_class()).key
        places.setdefault(key, []).append(value)
    olds, news = getattr(old, field.name), getattr(new, field.name)
    changed = [k for k in sorted({*olds, *news}) if _entry(field, olds, k) != _entry(field, news, k)]
    dropped = [places[k][0] for k in changed if k not in news]
    kept = [f for f in written if any(all(v is not d for d in dropped) for v in f.values)]
    adding = [k for k in changed if k not in places]
    if any(len(places.get(k, [])) > 1 for k in changed) or (adding and not kept):
        _rewrite(text, written, new, field.name, edits)  # a key written twice, or every entry replaced
        return
    for key in changed:
        if key in places and key in news:
            _edit_block(text, places[key][0].block, _entry(field, olds, key), _entry(field, news, key), edits)
    _drop(text, written, dropped, edits)
    if adding:
        edits.append(_append(text, kept[-1], [_entry(field, news, k) for k in adding]))


def _entry(field: FieldDescriptor, mapping, key: str) -> Message | None:
    """The map entry (key and value) ``mapping`` has for ``key``, as the message text writes."""
    if key not in mapping:
        return None
    entry = field.message_type._concrete_class(key=key)
    if field.message_type.fields_by_name["value"].message_type is None:
        entry.value = mapping[key]
    else:
        entry.value.CopyFrom(mapping[key])
    return entry


def _edit_scalars(text: str, written: list[_Field], field: FieldDescriptor, values: list, edits: list) -> None:
    """A repeated scalar (``preferred_batch_size: [ 4, 8 ]``) edited: each value in place where
    it is written once a line, else one list in place of the first, as bracketed as it was."""
    if not values:
        _remove(text, written, edits)
        return
    items = [_scalar(field, v) for v in values]
    if len(written) == len(items) and not any(f.brackets for f in written):
        edits.extend((f.values[0].start, f.values[0].end, item) for f, item in zip(written, items, strict=True))
        return
    first = written[0]
    start, end = first.brackets or (first.values[0].start, first.values[0].end)
    pad = " " if first.brackets is None or text[start + 1].isspace() else ""
    edits.append((start, end, f"[{pad}{', '.join(items)}{pad}]"))
    _remove(text, written[1:], edits)


def _scalar(field: FieldDescriptor, value) -> str:
    out = io.StringIO()
    text_format.PrintFieldValue(field, value, out)
    return out.getvalue()


def _only(message: Message, name: str) -> Message:
    """A copy of ``message`` holding only field ``name``."""
    only = copy.deepcopy(message)
    for field, _ in only.ListFields():
        if field.name != name:
            only.ClearField(field.name)
    return only


def _lines(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The whole lines around ``text[start:end]`` when it shares them with nothing but blanks
    and a trailing comment; None when it is written inline with other fields."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end == -1 else line_end + 1
    after = text[end:line_end].strip()
    if text[line_start:start].strip() or (after and not after.startswith("#")):
        return None
    return line_start, line_end


def _indent(text: str, offset: int) -> str | None:
    """The blanks before ``offset`` on its line, or None when something else comes first."""
    before = text[text.rfind("\n", 0, offset) + 1 : offset]
    return None if before.strip() else before


def _rewrite(text: str, written: list[_Field], new: Message, name: str, edits: list) -> None:
    """The field written anew from ``new`` in place of its first occurrence, in the same style
    (on its own lines at the same indent, or inline), its other occurrences removed."""
    first = written[0]
    lines = _lines(text, first.start, first.end)
    formatted = text_format.MessageToString(_only(new, name), as_one_line=lines is None).rstrip("\n")
    if not formatted:
        _remove(text, written, edits)
        return
    if lines is not None:
        formatted = formatted.replace("\n", "\n" + text[lines[0] : first.start])
    edits.append((first.start, first.end, formatted))
    _remove(text, written[1:], edits)


def _remove(text: str, written: list[_Field], edits: list) -> None:
    """Each occurrence removed: its whole lines (trailing comment included) when it has them
    to itself, else its text and the separator that went with it."""
    for field in written:
        if lines := _lines(text, field.start, field.end):
            edits.append((*lines, ""))
            continue
        start, end = field.start, field.end
        while start > 0 and text[start - 1] in " \t":
            start -= 1
        if start == 0 or text[start - 1] == "\n":
            start = field.start
            while end < len(text) and text[end] in " \t":
                end += 1
        elif text[end - 1] not in ",;" and text[start - 1] in ",;":
            start -= 1  # { a: 1, b: 2 } without b is { a: 1 }
        edits.append((start, end, ""))


def _drop(text: str, written: list[_Field], dropped: list[_Value], edits: list) -> None:
    """The elements ``dropped`` removed: an occurrence left with none goes whole; in a
    [ list ], each run of them goes with the comma that separated it from the rest."""
    ids = {id(v) for v in dropped}
    for field in written:
        gone = [id(v) in ids for v in field.values]
        if all(gone):
            _remove(text, [field], edits)
            continue
        values = field.values
        for i, value in enumerate(values):
            if gone[i] and (i == 0 or not gone[i - 1]):  # the start of a run of dropped elements
                last = next(j for j in range(i, len(values)) if j + 1 == len(values) or not gone[j + 1])
                if i > 0:
                    edits.append((values[i - 1].end, values[last].end, ""))
                else:
                    edits.append((value.start, values[last + 1].start, ""))


def _append(text: str, last: _Field, elements: list[Message]) -> tuple[int, int, str]:
    """``elements`` (of a repeated message or a map) written after the field's ``last``
    occurrence, in its style: inside its [ list ] when it has one, else as occurrences of their
    own; on lines of their own at the same indent or inline, spread over lines or not."""
    value = last.values[-1]
    if last.brackets is None:
        lines = _lines(text, last.start, last.end)
        if lines is None:
            return last.end, last.end, "".join(f" {last.name} {_element(e, '', None)}" for e in elements)
        indent = text[lines[0] : last.start]
        inner = _inner(text, value, indent)
        body = "".join(f"{indent}{last.name} {_element(e, indent, inner)}\n" for e in elements)
        return lines[1], lines[1], ("" if text[: lines[1]].endswith("\n") else "\n") + body
    indent = _indent(text, value.start)
    gap = " " if indent is None else "\n" + indent
    inner = _inner(text, value, indent or "")
    return value.end, value.end, "".join(f",{gap}{_element(e, indent or '', inner)}" for e in elements)


def _inner(text: str, value: _Value, indent: str) -> str | None:
    """The indent for the fields of an element written like ``value``: as its fields are, or
    None when it is on one line."""
    if "\n" not in text[value.start : value.end]:
        return None
    fields = value.block.fields
    found = _indent(text, fields[0].start) if fields else None
    return indent + "  " if found is None else found


def _element(element: Message, indent: str, inner: str | None) -> str:
    """``{ ... }`` holding ``element``: on one line, or its fields on lines at ``inner`` and
    the closing brace at ``indent``."""
    if inner is not None:
        return "{\n" + _indented(element, inner) + indent + "}"
    body = text_format.MessageToString(element, as_one_line=True)
    return "{ " + body + " }" if body else "{ }"


def _indented(message: Message, indent: str) -> str:
    """``message`` over lines, each after ``indent`` (the user's blanks, tabs or spaces)."""
    return "".join(f"{indent}{line}\n" for line in text_format.MessageToString(message).splitlines())


def _insertion(text: str, block: _Block, new: Message, added: list[str]) -> tuple[int, int, str]:
    """The fields ``added`` written at the end of ``block``: on lines of their own before its
    closing brace, indented as its fields are, or inline when the brace shares its line."""
    only = [_only(new, name) for name in added]
    if block.start == 0:  # the file: fields go at its end
        body = "".join(format_config(message) for message in only)
        return len(text), len(text), ("" if not text or text.endswith("\n") else "\n") + body
    closing = _indent(text, block.close)
    if closing is not None:
        inner = _indent(text, block.fields[0].start) if block.fields else None
        indent = closing + "  " if inner is None else inner
        body = "".join(_indented(message, indent) for message in only)
        at = block.close - len(closing)
        return at, at, body
    at = block.close
    while at > block.start and text[at - 1] in " \t":
        at -= 1
    commas = any(text[f.end - 1] == "," for f in block.fields) and text[block.fields[-1].end - 1] not in ",;"
    body = " ".join(text_format.MessageToString(message, as_one_line=True) for message in only)
    return at, at, ("," if commas else "") + " " + body


def _header_length(text: str) -> int:
    lines = text.splitlines()
    return next((i for i, line in enumerate(lines) if not line.lstrip().startswith("#")), len(lines))
