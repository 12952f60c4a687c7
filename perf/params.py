"""Sweep parameters: short names and dotted paths into Triton's ModelConfig schema.

A path is checked against the protobuf descriptor itself, so every field Triton knows is
reachable (``dynamic_batching.priority_levels``, ``parameters.torch_num_threads``) and a typo
is caught before any server starts, with the nearest real names offered.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from perf.modelconfig import ModelConfig

# The settings users sweep most, by the names they know them by. A repeated message without
# an index (instance_group) means every element of it. The batcher's settings are the dynamic
# batcher's here; on a sequence-batched model :func:`path_for` finds them in its strategy.
ALIASES: dict[str, str] = {
    "instance_count": "instance_group.count",
    "kind": "instance_group.kind",
    "gpus": "instance_group.gpus",
    "max_batch_size": "max_batch_size",
    "preferred_batch_size": "dynamic_batching.preferred_batch_size",
    "max_queue_delay_microseconds": "dynamic_batching.max_queue_delay_microseconds",
    "preserve_ordering": "dynamic_batching.preserve_ordering",
    "response_cache": "response_cache.enable",
}

# Short names of the scheduler's settings, and of the instance groups' (which need one group).
SCHEDULER_NAMES = ("preferred_batch_size", "max_queue_delay_microseconds", "preserve_ordering")
GROUP_NAMES = ("instance_count", "kind", "gpus")

# The least value Triton accepts for a field (by its full protobuf name), with what a value
# below it would mean: 0 instances reads as the default count, 1.
_MINIMUM: dict[str, tuple[int, str]] = {
    "inference.ModelInstanceGroup.count": (1, "a count below 1 reads as the default, 1 instance"),
    "inference.ModelConfig.max_batch_size": (0, "0 means the model takes no batches"),
    "inference.ModelDynamicBatching.preferred_batch_size": (1, "a batch holds at least one request"),
    "inference.ModelSequenceBatching.StrategyOldest.preferred_batch_size": (1, "a batch holds at least one request"),
    "inference.ModelSequenceBatching.StrategyOldest.max_candidate_sequences": (1, "at least one sequence"),
    "inference.ModelInstanceGroup.gpus": (0, "GPUs are numbered from 0"),
    "inference.ModelDynamicBatching.priority_levels": (0, "0 means no priorities"),
}

_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+|[A-Za-z_][\w-]*)\])?$")
_INTEGER_TYPES = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64,
}  # fmt: skip


_UNSIGNED = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED32,
             FieldDescriptor.TYPE_FIXED64}  # fmt: skip


class ParamError(ValueError):
    """A parameter name or value that cannot be applied; the message names the fix."""


@dataclass(frozen=True)
class Step:
    """One segment of a resolved path: a field, and an element (by index, or by the ``name``
    of a named element such as an instance group) or map key if any."""

    field: FieldDescriptor
    index: int | None = None
    key: str | None = None
    element: str | None = None

    @property
    def one(self) -> bool:
        """Whether the step picks one element of a repeated field."""
        return self.index is not None or self.element is not None


def parse_value(text: str) -> Any:
    """A value as typed on the command line: YAML, so ``[8,16]``, ``2``, ``true``, ``KIND_CPU``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ParamError(f"cannot read value {text!r}: {error}") from None


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def resolve(path: str, descriptor: Descriptor = ModelConfig.DESCRIPTOR) -> list[Step]:
    """Check a dotted path against the schema; ParamError with close names if it is not one."""
    steps: list[Step] = []
    segments = path.split(".")
    i = 0
    while i < len(segments):
        match = _SEGMENT.match(segments[i])
        if match is None:
            raise ParamError(f"{path}: {segments[i]!r} is not a field name (write field or field[N])")
        name, index = match.group(1), match.group(2)
        field = descriptor.fields_by_name.get(name)
        if field is None:
            where = descriptor.full_name.split(".")[-1]
            aliases = ALIASES if descriptor is ModelConfig.DESCRIPTOR else {}
            names = list(dict.fromkeys([*descriptor.fields_by_name, *aliases]))
            parts = [part for part in name.lower().split("_") if part]
            close = list(
                dict.fromkeys(
                    [
                        *difflib.get_close_matches(name, names, n=4, cutoff=0.5),
                        *(n for n in names if all(part in n for part in parts)),
                    ]
                )
            )[:4]
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else f"; {where} has: {', '.join(descriptor.fields_by_name)}"
            )
            raise ParamError(f"{path}: unknown field {name!r}{hint}")
        if index is not None and not (_is_repeated(field) and not _is_map(field)):
            raise ParamError(f"{path}: {name} is not a list, it takes no [index]")
        if index is not None and not index.isdigit() and "name" not in (field.message_type.fields_by_name
                                                                         if field.message_type else {}):  # fmt: skip
            raise ParamError(f"{path}: the elements of {name} have no names: write {name}[N]")
        if _is_map(field):
            if i + 1 >= len(segments):
                raise ParamError(f"{path}: {name} is a map: name its key, as {name}.KEY")
            steps.append(Step(field, key=segments[i + 1]))
            i += 2
            descriptor = field.message_type.fields_by_name["value"].message_type
            if i < len(segments):
                raise ParamError(f"{path}: nothing can follow the key of {name}")
            break
        if index is not None and not index.isdigit():
            steps.append(Step(field, element=index))
        else:
            steps.append(Step(field, index=int(index) if index is not None else None))
        i += 1
        if i < len(segments):
            if field.message_type is None:
                raise ParamError(f"{path}: {name} is a value, it has no field {segments[i]!r}")
            descriptor = field.message_type
    return steps


def canonical_path(name: str) -> str:
    return ALIASES.get(name, name)


def path_for(name: str, config: ModelConfig) -> str:
    """The field ``name`` (a short name or a dotted path) means in ``config``. The batcher's
    settings are found in the scheduler the model actually uses (``sequence_batching.oldest.*``
    on a model batching sequences the Oldest way), and an instance group's only where the model
    has one group or the path names one. ParamError names the paths that do exist."""
    path = _scheduler_path(name, config) if name in SCHEDULER_NAMES else canonical_path(name)
    steps = resolve(path)
    top = steps[0]
    if config.platform == "ensemble" and top.field.name in ("instance_group", "dynamic_batching", "sequence_batching"):
        raise ParamError(f"{name}: {config.name} is an ensemble, with no instances or batcher of its own: "
                         f"{_on_steps(name, config)}")  # fmt: skip
    if top.field.name == "instance_group":
        groups = config.instance_group
        rest = path.partition(".")[2]
        choices = [f"instance_group[{i}].{rest}" + (f" (or instance_group[{g.name}].{rest})" if g.name else "")
                   for i, g in enumerate(groups)]  # fmt: skip
        listed = "; ".join(choices)
        if not top.one and len(groups) > 1:
            raise ParamError(f"{name}: {config.name} has {len(groups)} instance groups: name one, as {listed}")
        if top.element is not None and top.element not in [g.name for g in groups]:
            raise ParamError(f"{name}: {config.name} has no instance group named {top.element!r}; choose {listed}")
    _check_named(name, steps, config)
    return path


def _check_named(name: str, steps: list[Step], message: Message) -> None:
    """A named element (``input[IMAGE]``) must exist: setting one that does not would change nothing."""
    for step in steps:
        if step.key is not None or step.field.message_type is None:
            return
        container = getattr(message, step.field.name)
        if not step.field.is_repeated:
            message = container
            continue
        if step.element is not None:
            names = [e.name for e in container]
            if step.element not in names:
                raise ParamError(f"{name}: {step.field.name} has no element named {step.element!r} "
                                 f"(it has: {', '.join(names) or 'none'})")  # fmt: skip
            message = container[names.index(step.element)]
        elif step.index is not None and step.index < len(container):
            message = container[step.index]
        else:
            return


def _on_steps(name: str, ensemble: ModelConfig) -> str:
    """Where an ensemble's user can set ``name`` instead: on the models its steps call."""
    steps = list(dict.fromkeys(step.model_name for step in ensemble.ensemble_scheduling.step))
    return f"set it on the models it calls, as {' or '.join(f'{m}.{name}' for m in steps)}"


def _scheduler_path(name: str, config: ModelConfig) -> str:
    """A batcher setting's path in the scheduler ``config`` uses: the dynamic batcher's, or
    its sequence batcher's strategy's (Direct when none is written, as in Triton)."""
    choice = config.WhichOneof("scheduling_choice")
    if choice == "ensemble_scheduling":
        raise ParamError(f"{name}: {config.name} is an ensemble, with no batcher of its own: {_on_steps(name, config)}")
    if choice != "sequence_batching":
        return f"dynamic_batching.{name}"
    strategy = config.sequence_batching.WhichOneof("strategy_choice") or "direct"
    fields = getattr(config.sequence_batching, strategy).DESCRIPTOR.fields_by_name
    if name in fields:
        return f"sequence_batching.{strategy}.{name}"
    existing = ", ".join(f"sequence_batching.{strategy}.{f}" for f in fields)
    raise ParamError(f"{name}: {config.name} batches sequences with the {strategy.capitalize()} strategy, "
                     f"which has no {name}; its settings are {existing}")  # fmt: skip


def coerce(path: str, value: Any) -> Any:
    """The value in the form its field takes, or ParamError saying what was expected."""
    steps = resolve(canonical_path(path))
    last = steps[-1]
    if last.key is not None:
        if isinstance(value, dict | list):
            raise ParamError(f"{path}: a parameter value is one string, not {value!r}")
        return "true" if value is True else "false" if value is False else str(value)
    repeated = _is_repeated(last.field) and last.index is None and steps[-1].field.message_type is None
    if repeated:
        items = value if isinstance(value, list) else [value]
        return [_scalar(path, last.field, item) for item in items]
    if last.field.message_type is not None:
        if not isinstance(value, dict):
            raise ParamError(f"{path}: expects a mapping of {last.field.message_type.name} fields, got {value!r}")
        try:
            json_format.ParseDict(value, last.field.message_type._concrete_class())
        except json_format.ParseError as error:
            raise ParamError(f"{path}: {error}") from None
        return value
    return _scalar(path, last.field, value)


def _scalar(path: str, field: FieldDescriptor, value: Any) -> Any:
    if field.type in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{path}: expects a whole number, got {value!r}")
        least, why = _MINIMUM.get(field.full_name, (0, "it counts or times something"))
        if value < least and (field.full_name in _MINIMUM or field.type in _UNSIGNED or "microseconds" in field.name):
            raise ParamError(f"{path}: expects {least} or more ({why}), got {value}")
        return value
    if field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise ParamError(f"{path}: expects true or false, got {value!r}")
        return value
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(f"{path}: expects a number, got {value!r}")
        return float(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values]
        if value not in names:
            raise ParamError(f"{path}: expects one of {', '.join(names)}, got {value!r}")
        return value
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise ParamError(f"{path}: expects a string, got {value!r}")
        return value
    raise ParamError(f"{path}: fields of this type cannot be swept")


def apply(config: ModelConfig, path: str, value: Any) -> None:
    """Set ``path`` (as :func:`path_for` reads it in ``config``) to a value already checked by
    :func:`coerce`, creating what is missing (``dynamic_batching`` on a model with no
    scheduler, the one instance group of a bare config)."""
    _apply(config, resolve(path_for(path, config)), value)


def _apply(message: Message, steps: list[Step], value: Any) -> None:
    step, rest = steps[0], steps[1:]
    field = step.field
    if step.key is not None:
        getattr(message, field.name)[step.key].string_value = value
        return
    if not rest:
        _set_leaf(message, step, value)
        return
    if _is_repeated(field):
        elements = getattr(message, field.name)
        if step.element is not None:
            targets = [e for e in elements if e.name == step.element]
        elif step.index is not None:
            while len(elements) <= step.index:
                elements.add()
            targets = [elements[step.index]]
        else:
            targets = list(elements) or [elements.add()]
        for target in targets:
            _apply(target, rest, value)
    else:
        _apply(getattr(message, field.name), rest, value)


def _set_leaf(message: Message, step: Step, value: Any) -> None:
    field = step.field
    if field.message_type is not None:
        target = getattr(message, field.name)
        target.Clear()
        json_format.ParseDict(value, target)
        return
    if _is_repeated(field):
        elements = getattr(message, field.name)
        if step.index is None:
            del elements[:]
            elements.extend(_enum_numbers(field, value))
        else:
            while len(elements) <= step.index:
                elements.append(type(elements[0])() if elements else 0)
            elements[step.index] = _enum_numbers(field, [value])[0]
        return
    setattr(message, field.name, _enum_numbers(field, [value])[0])


def _enum_numbers(field: FieldDescriptor, values: list[Any]) -> list[Any]:
    if field.type != FieldDescriptor.TYPE_ENUM:
        return values
    return [field.enum_type.values_by_name[v].number for v in values]


# What Triton reads a field left unset as (by its full protobuf name), where that is not the
# field's zero: an instance group without a count runs one instance.
_UNSET_READS_AS: dict[str, Any] = {"inference.ModelInstanceGroup.count": 1}


def effective(config: ModelConfig, path: str) -> Any:
    """The value at ``path`` as Triton reads it: an unset count is 1, so a repository's own
    config and a generated ``count: 1`` are one point, and no table says ``instance_count=0``."""
    value = read(config, path)
    default = _UNSET_READS_AS.get(resolve(path_for(path, config))[-1].field.full_name)
    if default is None:
        return value
    if value == []:  # no instance group at all: Triton makes one
        return default
    return [default if v == 0 else v for v in value] if isinstance(value, list) else default if value == 0 else value


def read(config: ModelConfig, path: str) -> Any:
    """The value at ``path``, as plain Python (lists, names of enums), for comparing the
    config a server reports with the one intended."""
    values = _read(config, resolve(path_for(path, config)))
    return values[0] if len(values) == 1 else values


def _read(message: Message, steps: list[Step]) -> list[Any]:
    step, rest = steps[0], steps[1:]
    field = step.field
    if step.key is not None:
        params = getattr(message, field.name)
        return [params[step.key].string_value if step.key in params else None]
    container = getattr(message, field.name)
    if _is_repeated(field) and (rest or step.one):
        if step.element is not None:
            elements = [e for e in container if e.name == step.element]
        else:
            elements = list(container) if step.index is None else list(container)[step.index : step.index + 1]
        if not rest:
            return [_plain(field, e) for e in elements]
        return [v for element in elements for v in _read(element, rest)]
    if rest:
        return _read(container, rest)
    if _is_repeated(field):
        return [[_plain(field, e) for e in container]]
    return [_plain(field, container)]


def _plain(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if isinstance(value, Message):
        return json_format.MessageToDict(value, preserving_proto_field_name=True)
    return value
