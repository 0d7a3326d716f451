"""The `warden` command: parsing words into requests, printing responses, exit statuses."""

from __future__ import annotations

import io

import pytest

from warden_framework.client.cli import UsageError, format_message, main, parse_command
from warden_framework.protocol import error_response, pb


def test_positional_values_fill_required_fields_in_order():
    assert parse_command(["link", "h", "7"]) == pb.LinkRequest(handle=b"h", job_id=7)


def test_nested_and_repeated_fields():
    request = parse_command(
        [
            "create",
            "--bind_mounts[0].src_path", "/a",
            "--bind_mounts[0].dst_path=/b",
            "--bind_mounts[0].mode", "rw",
            "--bind_mounts[1].src_path", "/c",
            "--bind_mounts[1].dst_path", "/d",
            "--bind_mounts[1].mode", "0",
            "--grace_time", "30",
        ]
    )  # fmt: skip
    assert request == pb.CreateRequest(
        grace_time=30,
        bind_mounts=[
            pb.BindMount(src_path=b"/a", dst_path=b"/b", mode=pb.BindMount.RW),
            pb.BindMount(src_path=b"/c", dst_path=b"/d", mode=pb.BindMount.RO),
        ],
    )


def test_repeated_indices_may_come_in_any_order():
    words = ["create", "--bind_mounts[1].src_path", "/second", "--bind_mounts[0].src_path", "/1st"]
    request = parse_command(words)
    assert [mount.src_path for mount in request.bind_mounts] == [b"/1st", b"/second"]


def test_bool_flags_with_and_without_values():
    request = parse_command(["spawn", "h", "--privileged", "--discard_output=false", "echo hi"])
    assert request.privileged is True
    assert request.HasField("discard_output") and request.discard_output is False
    assert request.script == b"echo hi"
    assert parse_command(["stop", "h", "--kill", "yes", "--background"]).kill is True


def test_enum_names_negative_numbers_and_dashes():
    words = ["net-out", "h", "--protocol", "ICMP", "--icmp-type", "-1", "--port_range", "1:2"]
    request = parse_command(words)
    assert request == pb.NetOutRequest(
        handle=b"h", protocol=pb.NetOutRequest.ICMP, icmp_type=-1, port_range="1:2"
    )


def test_sub_message_fields():
    request = parse_command(["run", "h", "true", "--rlimits.nofile", "64", "--rlimits.as", "1"])
    assert request.rlimits == pb.ResourceLimits(nofile=64, **{"as": 1})


@pytest.mark.parametrize(
    "words, problem",
    [
        (["frobnicate"], "unknown command"),
        (["create", "--nope", "1"], "has no field 'nope'"),
        (["create", "--grace_time", "soon"], "whole number"),
        (["create", "--grace_time"], "needs a value"),
        (["create", "--handle[0]", "x"], "is not repeated"),
        (["create", "--bind_mounts.src_path", "x"], r"write bind_mounts\[N\]"),
        (["create", "--handle", "a", "--handle", "b"], "given twice"),
        (["net_out", "h", "--protocol", "sctp"], "takes one of TCP, UDP, ICMP, ALL"),
        (["info", "a", "b"], "at most 1 values"),
        (["spawn", "h", "--privileged", "maybe", "x"], "at most 2 values"),
    ],
)
def test_bad_words_raise_usage_error(words, problem):
    with pytest.raises(UsageError, match=problem):
        parse_command(words)


def test_format_message_prints_field_value_lines():
    response = pb.InfoResponse(
        state="active",
        events=["oom"],
        container_path=b"/d/\xff",
        memory_stat=pb.MemoryStat(rss=5),
        job_ids=[1, 2],
    )
    assert format_message(response) == [
        "state: active",
        "events[0]: oom",
        "container_path: /d/\\xff",
        "memory_stat.rss: 5",
        "job_ids[0]: 1",
        "job_ids[1]: 2",
    ]
    assert format_message(pb.BindMount(mode=1)) == ["mode: RW"]


def cli_server(request):
    if isinstance(request, pb.SpawnRequest):
        return [pb.SpawnResponse(job_id=7)]
    if isinstance(request, pb.StreamRequest):
        return [
            pb.StreamResponse(name="stdout", data=b"hello\n"),
            pb.StreamResponse(name="stderr", data=b"warn\n"),
            pb.StreamResponse(exit_status=42),
        ]
    if isinstance(request, pb.ListRequest):
        return [pb.ListResponse(handles=[b"a", b"b"])]
    if isinstance(request, pb.PingRequest):
        return [pb.PingResponse()]
    return [error_response("unknown handle")]


@pytest.fixture
def socket_path(fake_server):
    return str(fake_server(cli_server).path)


def test_main_prints_the_response(socket_path, capsys):
    assert main(["--socket", socket_path, "list"]) == 0
    assert capsys.readouterr().out == "handles[0]: a\nhandles[1]: b\n"


def test_main_exits_1_on_server_error(socket_path, capsys):
    assert main([f"--socket={socket_path}", "info", "nope"]) == 1
    assert capsys.readouterr().err == "error: unknown handle\n"


def test_main_run_streams_output_and_exits_with_the_job_status(fake_server, capsysbinary):
    server = fake_server(cli_server)
    assert main(["--socket", str(server.path), "run", "h", "echo hello"]) == 42
    captured = capsysbinary.readouterr()
    assert captured.out == b"hello\n"
    assert captured.err == b"warn\n"
    assert server.requests == [
        pb.SpawnRequest(handle=b"h", script=b"echo hello"),
        pb.StreamRequest(handle=b"h", job_id=7),
    ]


def test_main_exits_2_on_usage_error(socket_path, capsys):
    assert main(["--socket", socket_path, "create", "--bogus", "1"]) == 2
    assert "has no field 'bogus'" in capsys.readouterr().err


def test_main_exits_1_without_server(tmp_path, capsys):
    assert main(["--socket", str(tmp_path / "none.sock"), "ping"]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_main_without_command_reads_commands_from_stdin(socket_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("ping\n# a comment\n\nlist\ninfo x\nlist\n"))
    assert main(["--socket", socket_path]) == 0
    captured = capsys.readouterr()
    assert captured.out == "handles[0]: a\nhandles[1]: b\n" * 2
    assert captured.err == "error: unknown handle\n"


def test_repl_status_is_that_of_the_last_command(socket_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("list\ninfo x\n"))
    assert main(["--socket", socket_path]) == 1


def test_help_lists_commands_and_fields(capsys):
    assert main(["help"]) == 0
    assert "limit_bandwidth" in capsys.readouterr().out
    assert main(["help", "create"]) == 0
    out = capsys.readouterr().out
    assert "--bind_mounts[N].mode" in out and "ro|rw, required" in out
