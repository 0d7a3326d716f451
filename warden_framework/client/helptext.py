"""The text of `warden help COMMAND`: a request's fields and its response's, with types.

Owns how a message is described to a person. Everything comes from the protobuf
descriptors and the codec's REQUIRED_FIELDS and ENUM_FIELDS, so help cannot drift from
what the CLI parses and prints.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as ProtoMessage

from warden_framework.protocol.codec import ENUM_FIELDS, REQUIRED_FIELDS, response_class_for
from warden_framework.protocol.descriptors import is_repeated

__all__ = ["command_help", "command_synopsis"]

_TYPE_NAMES = {
    number: name.removeprefix("TYPE_").lower()
    for name, number in vars(FieldDescriptor).items()
    if name.startswith("TYPE_")
}
_STREAMED = {"run", "stream"}  # cli.py prints their job's output, not a response message
_INDENT = "  "


def command_synopsis(name: str, request: type[ProtoMessage]) -> str:
    """`info HANDLE [--FIELD VALUE ...]`: the command, its positional values, its options."""
    descriptor = request.DESCRIPTOR
    required = REQUIRED_FIELDS.get(descriptor.name, ())
    words = [name, *(field.upper() for field in required)]
    if len(descriptor.fields) > len(required):
        words.append("[--FIELD VALUE ...]")
    return " ".join(words)


def command_help(name: str, request: type[ProtoMessage]) -> str:
    """The help of one command: its synopsis, every request field, every response field."""
    lines = [f"usage: warden {command_synopsis(name, request)}", ""]
    lines += [f"request {request.DESCRIPTOR.name}:", *_table(request.DESCRIPTOR, "--")]
    if name in _STREAMED:
        lines += ["", "output: the job's stdout and stderr as they come; exit status: the job's"]
    else:
        response = response_class_for(request).DESCRIPTOR
        lines += ["", f"response {response.name}:", *_table(response, "")]
    return "\n".join(lines) + "\n"


def _table(descriptor: Descriptor, dashes: str) -> list[str]:
    rows = _rows(descriptor, dashes, depth=1)
    if not rows:
        return [f"{_INDENT}(no fields)"]
    width = max(len(name) for name, _ in rows) + 2
    return [f"{name:<{width}}{kind}" for name, kind in rows]


def _rows(descriptor: Descriptor, prefix: str, depth: int) -> list[tuple[str, str]]:
    """(indented option or field path, its description) for every field, nested ones after
    their message, one level deeper; repeated fields show their index as [N]."""
    rows = []
    required = REQUIRED_FIELDS.get(descriptor.name, ())
    for field in descriptor.fields:
        path = prefix + field.name
        repeated = is_repeated(field)
        if repeated:
            path += "[N]"
        kind = ("repeated " if repeated else "") + _kind(descriptor, field)
        if field.name in required:
            kind += ", required"
        rows.append((_INDENT * depth + path, kind))
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            rows += _rows(field.message_type, path + ".", depth + 1)
    return rows


def _kind(descriptor: Descriptor, field: FieldDescriptor) -> str:
    enum = ENUM_FIELDS.get((descriptor.name, field.name))
    if enum is not None:
        return "enum " + "|".join(value.name.lower() for value in enum.values)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return "message " + field.message_type.name
    return _TYPE_NAMES[field.type]
