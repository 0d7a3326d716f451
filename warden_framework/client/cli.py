"""The `warden` command: one request from the command line, or a REPL reading stdin.

Owns turning words into requests and responses into `field: value` lines; the
connection is connection.Client's, the option syntax options.py's, the REPL's loop and
terminal repl.py's, the text of `help COMMAND` helptext.py's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as ProtoMessage

from warden_framework.client.connection import DEFAULT_SOCKET, Client
from warden_framework.client.errors import ServerError
from warden_framework.client.helptext import command_help, command_synopsis
from warden_framework.client.options import BOOL_WORDS, UsageError, resolve, segments
from warden_framework.client.repl import repl
from warden_framework.client.requests import REQUEST_CLASSES, build_message
from warden_framework.protocol import REQUIRED_FIELDS, ProtocolError, pb
from warden_framework.protocol.codec import ENUM_FIELDS
from warden_framework.protocol.descriptors import is_repeated

__all__ = ["UsageError", "execute", "format_message", "main", "parse_command"]

_SYNOPSIS = f"""\
usage: warden [--socket PATH] COMMAND [VALUE ...] [--FIELD VALUE ...]
       warden [--socket PATH]            (read commands from stdin, one per line)
       warden help [COMMAND]             (the commands; a command's fields and types)

Positional values fill the request's required fields in order; options name any
field: nested fields as --a.b, repeated ones as --a[0] (--bind_mounts[0].mode rw),
booleans as --flag, --flag=false. `run` spawns the script, streams its output and
exits with the job's exit status. The socket defaults to $WARDEN_SOCKET or
{DEFAULT_SOCKET}. On a terminal the REPL keeps a history in $WARDEN_HISTORY or
~/.warden_history and completes commands, --fields and values with TAB.
"""
USAGE = f"{_SYNOPSIS}\ncommands: {', '.join(REQUEST_CLASSES)}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `warden` command with `argv` (default sys.argv[1:]); return the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        socket_path, words = _global_options(words)
    except UsageError as error:
        print(f"warden: {error}\n\n{USAGE}", file=sys.stderr, end="")
        return 2
    client = Client(socket_path)
    try:
        if not words:
            return repl(
                lambda words: execute(client, words, sys.stdout, sys.stderr),
                sys.stdin,
                sys.stdout,
                sys.stderr,
                on_interrupt=client.disconnect,
            )
        return execute(client, words, sys.stdout, sys.stderr)
    finally:
        client.disconnect()


def execute(client: Client, words: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Execute one command given as words (`["create", "--handle", "x"]`); return its status."""
    try:
        if words[0] in ("help", "-h", "--help"):
            out.write(_help(words[1:]))
            return 0
        if _command(words[0]) == "run":
            return _run(client, parse_command(["spawn", *words[1:]]), out, err)
        request = parse_command(words)
        if isinstance(request, pb.StreamRequest):
            return _print_stream(client.stream(request), out, err)
        _write_lines(out, format_message(client.call(request)))
        return 0
    except UsageError as error:
        err.write(f"warden: {error}\n")
        return 2
    except ServerError as error:
        err.write(f"error: {error.message}\n")
        return 1
    except (OSError, EOFError, ProtocolError) as error:
        err.write(f"warden: {client.socket_path}: {error}\n")
        return 1


def parse_command(words: Sequence[str]) -> ProtoMessage:
    """Build the request that command-line words describe; UsageError if they do not."""
    cls = _request_class(words[0])
    positional, fields = _parse_fields(cls.DESCRIPTOR, words[1:])
    required = REQUIRED_FIELDS.get(cls.DESCRIPTOR.name, ())
    if len(positional) > len(required):
        raise UsageError(f"{words[0]} takes at most {len(required)} values ({', '.join(required)})")
    for name, value in zip(required, positional, strict=False):
        if name in fields:
            raise UsageError(f"{name} given both as a value and as --{name}")
        fields[name] = value
    try:
        return build_message(cls, fields, from_text=True)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def format_message(message: ProtoMessage, prefix: str = "") -> list[str]:
    """Return `message` as `field: value` lines; nested as a.b, repeated as a[0]."""
    lines = []
    for field, value in message.ListFields():
        path = prefix + field.name
        if is_repeated(field):
            for index, item in enumerate(value):
                lines += _format_value(field, item, f"{path}[{index}]")
        else:
            lines += _format_value(field, value, path)
    return lines


def _format_value(field: FieldDescriptor, value: Any, path: str) -> list[str]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return format_message(value, path + ".")
    enum = ENUM_FIELDS.get((field.containing_type.name, field.name))
    if enum is not None and value in enum.values_by_number:
        text = enum.values_by_number[value].name
    elif isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace")
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = str(value)
    return [f"{path}: {text}"]


def _global_options(words: list[str]) -> tuple[str, list[str]]:
    socket_path = os.environ.get("WARDEN_SOCKET", DEFAULT_SOCKET)
    while words and words[0].startswith("-") and words[0] not in ("-h", "--help"):
        option, eq, value = words[0].partition("=")
        if option not in ("--socket", "-s"):
            raise UsageError(f"unknown option {option}")
        if not eq:
            if len(words) < 2:
                raise UsageError(f"{option} needs a path")
            value, words = words[1], words[1:]
        socket_path, words = value, words[1:]
    return socket_path, words


def _command(word: str) -> str:
    return word.replace("-", "_")


def _request_class(word: str) -> type[ProtoMessage]:
    cls = REQUEST_CLASSES.get(_command(word))
    if cls is None:
        raise UsageError(f"unknown command {word!r} (commands: {', '.join(REQUEST_CLASSES)})")
    return cls


def _parse_fields(descriptor: Descriptor, args: Sequence[str]) -> tuple[list[str], dict]:
    """Split args into positional values and a tree of options ({name: {index: ...}})."""
    positional: list[str] = []
    tree: dict[str, Any] = {}
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if not word.startswith("--"):
            positional.append(word)
            continue
        key, eq, value = word[2:].partition("=")
        field = resolve(descriptor, key)
        if not eq:
            takes_flag = field.type == FieldDescriptor.TYPE_BOOL and (
                index == len(args) or args[index].lower() not in BOOL_WORDS
            )
            if takes_flag:
                value = "true"
            elif index == len(args):
                raise UsageError(f"--{key} needs a value")
            else:
                value, index = args[index], index + 1
        _assign(tree, descriptor, key, value)
    return positional, tree


def _assign(tree: dict[str, Any], descriptor: Descriptor, key: str, value: str) -> None:
    node: dict[Any, Any] = tree
    parts = segments(key)
    for position, (name, number) in enumerate(parts):
        field = descriptor.fields_by_name[name]
        last = position == len(parts) - 1
        if is_repeated(field):
            node = node.setdefault(name, {})
            name = len(node) if number is None else number
        if last:
            if name in node:
                raise UsageError(f"--{key} given twice")
            node[name] = value
        else:
            node = node.setdefault(name, {})
            descriptor = field.message_type


def _run(client: Client, spawn: ProtoMessage, out: TextIO, err: TextIO) -> int:
    job = client.call(spawn)
    return _print_stream(client.stream(spawn.handle, job.job_id), out, err)


def _print_stream(responses: Iterable[pb.StreamResponse], out: TextIO, err: TextIO) -> int:
    status = 0
    for response in responses:
        if response.HasField("data"):
            _write_bytes(err if response.name == "stderr" else out, response.data)
        if response.HasField("exit_status"):
            status = response.exit_status
    return status


def _write_bytes(stream: TextIO, data: bytes) -> None:
    buffer = getattr(stream, "buffer", None)
    stream.flush()
    if buffer is None:
        stream.write(data.decode("utf-8", "backslashreplace"))
    else:
        buffer.write(data)
        buffer.flush()


def _write_lines(out: TextIO, lines: list[str]) -> None:
    for line in lines:
        out.write(line + "\n")


def _help(words: Sequence[str]) -> str:
    if words:
        return command_help(_command(words[0]), _request_class(words[0]))
    table = [f"  {command_synopsis(name, cls)}" for name, cls in REQUEST_CLASSES.items()]
    return "\n".join([_SYNOPSIS, "commands:", *table]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
