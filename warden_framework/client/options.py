"""The option syntax of the `warden` command: `--a`, nested `--a.b`, repeated `--a[0].b`.

Owns splitting an option's key into segments and resolving it against a request's
descriptor; cli.py parses words with it and completion.py completes them with it, so
the two never disagree about what a valid option is.
"""

from __future__ import annotations

import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from warden_framework.protocol.descriptors import is_repeated

__all__ = ["BOOL_WORDS", "UsageError", "resolve", "segments"]

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)(?:\[([0-9]+)\])?$")

BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})
"""Words a bool option takes as its value; any other word after `--flag` is the next word."""


class UsageError(Exception):
    """Words that do not make a request."""


def segments(key: str) -> list[tuple[str, int | None]]:
    """Split `a[0].b-c` into [("a", 0), ("b_c", None)]; UsageError if a part is malformed."""
    parts = []
    for part in key.split("."):
        match = _SEGMENT.match(part)
        if match is None:
            raise UsageError(f"bad option --{key}")
        number = match.group(2)
        parts.append((match.group(1).replace("-", "_"), None if number is None else int(number)))
    return parts


def resolve(descriptor: Descriptor, key: str) -> FieldDescriptor:
    """Return the field that option --key names, checking every step of its path."""
    parts = segments(key)
    for position, (name, number) in enumerate(parts):
        field = descriptor.fields_by_name.get(name)
        if field is None:
            raise UsageError(f"{descriptor.name} has no field {name!r} (in --{key})")
        repeated = is_repeated(field)
        if number is not None and not repeated:
            raise UsageError(f"field {name} is not repeated (in --{key})")
        last = position == len(parts) - 1
        if not last and field.type != FieldDescriptor.TYPE_MESSAGE:
            raise UsageError(f"field {name} has no sub-fields (in --{key})")
        if not last and repeated and number is None:
            raise UsageError(f"field {name} is repeated: write {name}[N] (in --{key})")
        if not last:
            descriptor = field.message_type
    return field
