"""Building Warden requests from Python values or command-line text.

Owns the command name -> request class table (`create` -> CreateRequest, ...) and the
conversion of keyword arguments into protobuf messages; sending them is connection.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as ProtoMessage

from warden_framework.protocol.codec import ENUM_FIELDS, MESSAGE_TYPES, REQUIRED_FIELDS
from warden_framework.protocol.descriptors import is_repeated

__all__ = [
    "REQUEST_CLASSES",
    "build_message",
    "build_request",
    "command_name",
    "stream_request",
]

_INT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
    }
)
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def command_name(request_cls: type[ProtoMessage]) -> str:
    """Return the snake-case command of a request class: LimitMemoryRequest -> limit_memory."""
    stem = request_cls.__name__.removesuffix("Request")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


REQUEST_CLASSES: dict[str, type[ProtoMessage]] = {
    command_name(request): request for request, _ in MESSAGE_TYPES.values()
}
"""Command name (`create`, `limit_memory`, ...) -> request class, for every request type."""


def build_request(request: str | type[ProtoMessage], *args: Any, **fields: Any) -> ProtoMessage:
    """Build a request from positional and keyword arguments.

    `request` is a command name or a request class. Positional arguments fill the
    request's required fields in order (`run(handle, script)`, `link(handle, job_id)`);
    keywords name any field. Values as for build_message; None means "leave unset".
    """
    cls = REQUEST_CLASSES[request] if isinstance(request, str) else request
    required = REQUIRED_FIELDS.get(cls.DESCRIPTOR.name, ())
    if len(args) > len(required):
        raise TypeError(
            f"{cls.__name__} takes at most {len(required)} positional arguments "
            f"({', '.join(required) or 'none'}), got {len(args)}"
        )
    for name, value in zip(required, args, strict=False):
        if name in fields:
            raise TypeError(f"{cls.__name__}: field {name} given twice")
        fields[name] = value
    return build_message(cls, fields)


def stream_request(*args: Any, **fields: Any) -> ProtoMessage:
    """Return the StreamRequest given, or build one from its fields (`handle, job_id`)."""
    if args and isinstance(args[0], ProtoMessage):
        if len(args) > 1 or fields:
            raise TypeError("stream() takes a StreamRequest or its fields, not both")
        return args[0]
    return build_request("stream", *args, **fields)


def build_message(
    cls: type[ProtoMessage], fields: Mapping[str, Any], *, from_text: bool = False
) -> ProtoMessage:
    """Build a message of `cls` from a mapping of field names to values.

    Bytes fields take bytes or str (encoded as UTF-8); enum fields take the number or
    the value's name in any case (`rw`, `udp`); message fields take a mapping or a
    message; repeated fields take a sequence, or with `from_text` a mapping from index
    to value. With `from_text`, numbers and booleans may be given as text, as the CLI
    does. Raises TypeError for an unknown field or a value of the wrong kind, and
    ValueError for a value that does not parse.
    """
    message = cls()
    for name, value in fields.items():
        if value is None:
            continue
        field = _field(cls.DESCRIPTOR, name)
        if is_repeated(field):
            _set_repeated(message, field, value, from_text)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(_sub_message(field, value, from_text))
        else:
            setattr(message, field.name, _scalar(field, value, from_text))
    return message


def _field(descriptor: Descriptor, name: str) -> FieldDescriptor:
    field = descriptor.fields_by_name.get(name.replace("-", "_"))
    if field is None:
        known = ", ".join(descriptor.fields_by_name) or "none"
        raise TypeError(f"{descriptor.name} has no field {name!r} (fields: {known})")
    return field


def _set_repeated(
    message: ProtoMessage, field: FieldDescriptor, value: Any, from_text: bool
) -> None:
    if from_text and isinstance(value, Mapping):
        value = [value[index] for index in sorted(value)]
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(f"field {field.name} is repeated: give a list, got {value!r}")
    target = getattr(message, field.name)
    for item in value:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            target.add().CopyFrom(_sub_message(field, item, from_text))
        else:
            target.append(_scalar(field, item, from_text))


def _sub_message(field: FieldDescriptor, value: Any, from_text: bool) -> ProtoMessage:
    cls = field.message_type._concrete_class
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return build_message(cls, value, from_text=from_text)
    raise TypeError(f"field {field.name} takes a mapping or {cls.__name__}, got {value!r}")


def _scalar(field: FieldDescriptor, value: Any, from_text: bool) -> Any:
    if isinstance(value, (list, tuple, Mapping)):
        raise TypeError(f"field {field.name} takes one value, got {value!r}")
    enum = ENUM_FIELDS.get((field.containing_type.name, field.name))
    if enum is not None and isinstance(value, str) and not _is_int(value):
        return _enum_number(field, enum, value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if field.type == FieldDescriptor.TYPE_STRING:
        return value.decode("utf-8") if isinstance(value, bytes) else value
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _bool(field, value, from_text)
    if field.type in _INT_TYPES:
        return _int(field, value, from_text)
    return value


def _enum_number(field: FieldDescriptor, enum: Any, text: str) -> int:
    for value in enum.values:
        if value.name.lower() == text.lower():
            return value.number
    names = ", ".join(value.name for value in enum.values)
    raise ValueError(f"field {field.name} takes one of {names}, got {text!r}")


def _bool(field: FieldDescriptor, value: Any, from_text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError(f"field {field.name} takes true or false, got {value!r}")


def _int(field: FieldDescriptor, value: Any, from_text: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if from_text and isinstance(value, str) and _is_int(value):
        return int(value)
    raise ValueError(f"field {field.name} takes a whole number, got {value!r}")


def _is_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?[0-9]+", text.strip()) is not None
