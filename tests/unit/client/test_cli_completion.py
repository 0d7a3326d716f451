"""REPL tab completion as a pure function: commands, --fields, enum and bool values."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor

from warden_framework.client.cli import parse_command
from warden_framework.client.completion import complete
from warden_framework.client.options import resolve
from warden_framework.client.requests import REQUEST_CLASSES
from warden_framework.protocol import pb


def test_first_word_completes_commands_and_repl_words():
    assert complete("lim", "lim") == [
        "limit_bandwidth ", "limit_cpu ", "limit_disk ", "limit_memory ",
    ]  # fmt: skip
    everything = complete("", "")
    assert set(everything) == {f"{name} " for name in [*REQUEST_CLASSES, "exit", "help", "quit"]}
    assert complete("ex", "ex") == ["exit "]


def test_help_completes_command_names_once():
    assert complete("help c", "c") == ["copy_in ", "copy_out ", "create "]
    assert complete("help create ", "") == []


@pytest.mark.parametrize(
    "line, word, expected",
    [
        ("create --g", "--g", ["--grace_time "]),
        ("run h x --rl", "--rl", ["--rlimits."]),
        ("run h x --rlimits.no", "--rlimits.no", ["--rlimits.nofile "]),
        ("create --b", "--b", ["--bind_mounts[0]."]),
        (
            "create --bind_mounts[0].",
            "--bind_mounts[0].",
            ["--bind_mounts[0].dst_path ", "--bind_mounts[0].mode ", "--bind_mounts[0].src_path "],
        ),
        # an index in use is offered again, and the next free one
        ("create --bind_mounts[0].src_path /a --b", "--b",
         ["--bind_mounts[0].", "--bind_mounts[1]."]),
        ("create --bind-mounts[3].mode rw --bind_mounts[", "--bind_mounts[",
         ["--bind_mounts[3].", "--bind_mounts[4]."]),
        # dashes are the parser's underscores
        ("net-out h --icmp-t", "--icmp-t", ["--icmp_type "]),
    ],
)  # fmt: skip
def test_options_nested_and_repeated(line, word, expected):
    assert complete(line, word) == expected


def test_options_already_given_are_not_offered_again():
    offered = complete("stop h --kill --", "--")  # handle given by position, kill by option
    assert offered == ["--background "]
    nested = complete("create --bind_mounts[0].mode ro --bind_mounts[0].", "--bind_mounts[0].")
    assert nested == ["--bind_mounts[0].dst_path ", "--bind_mounts[0].src_path "]


@pytest.mark.parametrize(
    "line, word, expected",
    [
        ("create --bind_mounts[0].mode ", "", ["ro ", "rw "]),
        ("net_out h --protocol U", "U", ["udp "]),
        ("net_out h --protocol=", "", ["all ", "icmp ", "tcp ", "udp "]),  # readline split at =
        ("net_out h --protocol=ic", "--protocol=ic", ["--protocol=icmp "]),  # it did not
        ("stop h --kill ", "", ["false ", "true "]),
        ("stop h --kill --b", "--b", ["--background "]),  # a bool option needs no value
        ("stop h --kill yes --", "--", ["--background "]),
    ],
)
def test_values_of_enums_and_bools(line, word, expected):
    assert complete(line, word) == expected


@pytest.mark.parametrize(
    "line, word",
    [
        ("create --handle ", ""),  # free text
        ("create --handle --g", "--g"),  # the parser takes --g as the handle
        ("create --grace_time ", ""),
        ("spawn h 'echo", "'echo"),  # an open quote
        ("frobnicate --", "--"),
        ("create --bind_mounts.", "--bind_mounts."),  # repeated: needs an index
        ("create --handle.", "--handle."),  # not a message
        ("info h", "h"),  # a positional value
    ],
)
def test_nothing_to_offer(line, word):
    assert complete(line, word) == []


def _finished_options(command: str) -> list[str]:
    """Follow completion from `--` until every option is finished (ends with a space)."""
    finished, pending = [], complete(f"{command} --", "--")
    while pending:
        option = pending.pop()
        if option.endswith(" "):
            finished.append(option.strip())
        else:
            pending += complete(f"{command} {option}", option)
    return finished


def _leaf_count(descriptor) -> int:
    return sum(
        _leaf_count(field.message_type) if field.type == FieldDescriptor.TYPE_MESSAGE else 1
        for field in descriptor.fields
    )


@pytest.mark.parametrize("command", sorted(REQUEST_CLASSES))
def test_every_completed_option_is_one_the_parser_accepts(command):
    descriptor = REQUEST_CLASSES[command].DESCRIPTOR
    options = _finished_options(command)
    assert len(options) == len(set(options)) == _leaf_count(descriptor)
    for option in options:
        assert resolve(descriptor, option[2:]).type != FieldDescriptor.TYPE_MESSAGE


def test_every_completed_enum_value_parses():
    values = [word.strip() for word in complete("net_out h --protocol ", "")]
    protocols = [parse_command(["net_out", "h", "--protocol", v]).protocol for v in values]
    assert sorted(protocols) == sorted(pb.NetOutRequest.Protocol.values())
