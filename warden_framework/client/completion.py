"""Tab completion for the `warden` REPL, as a pure function of the text before the cursor.

Owns what may come next on a line: a command name first, then that request's `--field`
options (nested as --a.b, repeated as --a[0].b: options.py's syntax), enum values and
true/false where an option takes them. repl.py hands it readline's line and word;
nothing here touches a terminal, so every rule is tested without one.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from warden_framework.client.options import BOOL_WORDS, UsageError, resolve
from warden_framework.client.requests import REQUEST_CLASSES
from warden_framework.protocol.codec import ENUM_FIELDS, REQUIRED_FIELDS
from warden_framework.protocol.descriptors import is_repeated

__all__ = ["HELP_WORDS", "REPL_WORDS", "complete"]

HELP_WORDS = ("help", "-h", "--help")
REPL_WORDS = ("exit", "help", "quit")
"""Words the REPL answers itself, offered with the commands as a line's first word."""


def complete(line: str, word: str) -> list[str]:
    """Return the sorted words that may replace `word`, the end of `line` (text before the cursor).

    A finished word ends with a space, so the cursor moves on; an option that still
    needs a part (`--rlimits.`, `--bind_mounts[1].`) does not. A line that does not
    parse (an open quote, an unknown command) completes to nothing.
    """
    before = line[: len(line) - len(word)]
    try:
        words = shlex.split(before)
    except ValueError:
        return []
    if not words:
        return _matching([*REQUEST_CLASSES, *REPL_WORDS], word)
    if words[0] in HELP_WORDS:
        return _matching(REQUEST_CLASSES, word) if len(words) == 1 else []
    cls = REQUEST_CLASSES.get(words[0].replace("-", "_"))
    if cls is None:
        return []
    return _after_command(cls.DESCRIPTOR, words[1:], before, word)


def _after_command(descriptor: Descriptor, args: list[str], before: str, word: str) -> list[str]:
    if word.startswith("--") and "=" in word:  # --key=value, when `=` does not split words
        key, _, value = word[2:].partition("=")
        return [f"--{key}={choice}" for choice in _values(_field(descriptor, key), value)]
    attached = before.rsplit(None, 1)[-1] if before and not before[-1].isspace() else ""
    if attached.startswith("--") and attached.endswith("="):  # readline split at the `=`
        return _values(_field(descriptor, attached[2:-1]), word)
    pending, given = _scan(descriptor, args)
    if pending is not None and not (_is_bool(pending) and word.startswith("-")):
        return _values(pending, word)
    if word and not word.startswith("-"):
        return []
    return _options(descriptor, word, args, given)


def _scan(descriptor: Descriptor, args: Sequence[str]) -> tuple[FieldDescriptor | None, set[str]]:
    """Read the words after the command by cli.py's rules: return the field whose value
    the next word is (or None), and the fields already given, by option or by position."""
    pending = None
    given: set[str] = set()
    positional = 0
    for arg in args:
        if pending is not None:
            consumed = not _is_bool(pending) or arg.lower() in BOOL_WORDS
            pending = None
            if consumed:
                continue
        if not arg.startswith("--"):
            positional += 1
            continue
        key, eq, _ = arg[2:].partition("=")
        given.add(key.replace("-", "_"))
        if not eq:
            pending = _field(descriptor, key)
    given.update(REQUIRED_FIELDS.get(descriptor.name, ())[:positional])
    return pending, given


def _options(descriptor: Descriptor, word: str, args: Sequence[str], given: set[str]) -> list[str]:
    key = word[2:].replace("-", "_") if word.startswith("--") else ""
    head, dot, _ = key.rpartition(".")
    if dot:
        parent = _field(descriptor, head)
        if parent is None or parent.type != FieldDescriptor.TYPE_MESSAGE:
            return []
        if is_repeated(parent) and not head.endswith("]"):
            return []
        descriptor = parent.message_type
    prefix = head + dot
    candidates = []
    for field in descriptor.fields:
        path = prefix + field.name
        repeated = is_repeated(field)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if repeated:
                candidates += [f"--{path}[{index}]." for index in _indices(path, args)]
            else:
                candidates.append(f"--{path}.")
        elif repeated or path not in given:
            candidates.append(f"--{path} ")
    return sorted(c for c in candidates if c.startswith("--" + key))


def _indices(path: str, args: Sequence[str]) -> list[int]:
    """The indices of repeated option `path` already on the line, and the next free one."""
    pattern = re.compile(rf"{re.escape(path)}\[([0-9]+)\]")
    keys = (arg[2:].replace("-", "_") for arg in args if arg.startswith("--"))
    used = {int(match.group(1)) for key in keys if (match := pattern.match(key))}
    return [*sorted(used), max(used, default=-1) + 1]


def _values(field: FieldDescriptor | None, word: str) -> list[str]:
    """The values an option takes, if they are a closed set (an enum, a bool); else none."""
    if field is None:
        return []
    enum = ENUM_FIELDS.get((field.containing_type.name, field.name))
    if enum is not None:
        return _matching((value.name.lower() for value in enum.values), word.lower())
    if _is_bool(field):
        return _matching(("true", "false"), word.lower())
    return []


def _field(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    try:
        return resolve(descriptor, key)
    except UsageError:
        return None


def _is_bool(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_BOOL


def _matching(choices: Iterable[str], word: str) -> list[str]:
    return sorted({f"{choice} " for choice in choices if choice.startswith(word)})
