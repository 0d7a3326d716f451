"""`warden help` and `warden help COMMAND`: the commands, and each one's fields and types."""

from __future__ import annotations

import re

import pytest

from warden_framework.client.cli import main
from warden_framework.client.requests import REQUEST_CLASSES
from warden_framework.protocol.codec import response_class_for


def _help(capsys, *words: str) -> str:
    assert main(["help", *words]) == 0
    return capsys.readouterr().out


def _rows(text: str) -> dict[str, tuple[int, str]]:
    """Table rows of a help text: {path: (indent, description)}."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"( +)(\S+)  +(.+)$", line)
        if match:
            rows[match.group(2)] = (len(match.group(1)), match.group(3))
    return rows


def test_help_alone_lists_every_command_with_its_positional_values(capsys):
    out = _help(capsys)
    commands = out.split("commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in commands] == list(REQUEST_CLASSES)
    assert "  link HANDLE JOB_ID" in commands
    assert "  create [--FIELD VALUE ...]" in commands
    assert "  ping" in commands


def test_help_command_gives_types_requirements_and_nesting(capsys):
    out = _help(capsys, "create")
    assert out.startswith("usage: warden create [--FIELD VALUE ...]\n")
    rows = _rows(out.split("response", 1)[0])
    assert rows["--grace_time"] == (2, "uint32")
    assert rows["--network"] == (2, "string")
    assert rows["--handle"] == (2, "bytes")
    assert rows["--bind_mounts[N]"] == (2, "repeated message BindMount")
    assert rows["--bind_mounts[N].src_path"] == (4, "bytes, required")
    assert rows["--bind_mounts[N].mode"] == (4, "enum ro|rw, required")
    assert _rows(out.split("response CreateResponse:", 1)[1]) == {"handle": (2, "bytes, required")}


def test_help_shows_bools_enums_and_positional_required_fields(capsys):
    stop = _rows(_help(capsys, "stop"))
    assert stop["--handle"] == (2, "bytes, required")
    assert stop["--kill"] == (2, "bool")
    net_out = _help(capsys, "net-out")  # dashes work as in commands
    assert _rows(net_out)["--protocol"] == (2, "enum tcp|udp|icmp|all")
    assert _rows(net_out)["--icmp_type"] == (2, "int32")


def test_help_shows_nested_response_fields(capsys):
    rows = _rows(_help(capsys, "link").split("response LinkResponse:", 1)[1])
    assert rows["info"] == (2, "message InfoResponse")
    assert rows["info.events[N]"] == (4, "repeated string")
    assert rows["info.memory_stat.rss"] == (6, "uint64")
    assert rows["exit_status"] == (2, "uint32")


@pytest.mark.parametrize("command", sorted(REQUEST_CLASSES))
def test_help_names_every_field_of_request_and_response(command, capsys):
    out = _help(capsys, command)
    request_part, _, response_part = out.partition("\nresponse ")
    request = REQUEST_CLASSES[command].DESCRIPTOR
    assert out.count(f"request {request.name}:\n") == 1
    rows = _rows(request_part)
    for field in request.fields:
        assert any(path.startswith(f"--{field.name}") for path in rows), field.name
    if command in ("run", "stream"):  # the CLI prints the job's output for these
        assert not response_part and "output: the job's stdout and stderr" in out
        return
    response = response_class_for(REQUEST_CLASSES[command]).DESCRIPTOR
    assert response_part.startswith(f"{response.name}:\n")
    rows = _rows(response_part)
    for field in response.fields:
        assert any(path.startswith(field.name) for path in rows), field.name
    if not response.fields:
        assert "(no fields)" in response_part


def test_help_for_an_unknown_command_exits_2_naming_the_known_ones(capsys):
    assert main(["help", "frobnicate"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown command 'frobnicate'" in captured.err
    assert all(name in captured.err for name in REQUEST_CLASSES)
