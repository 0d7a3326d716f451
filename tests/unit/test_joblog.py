"""log_tag: a job's output lines reach syslog as `warden.<tag>`, stdout at user.info and
stderr at user.err (facts §6.4)."""

import socket

from warden_framework.client import Client
from warden_framework.server.joblog import split_lines, syslog_datagrams
from warden_framework.testing.fakes import FAKE_DRIVERS
from warden_framework.testing.server import fake_settings, running_server


def test_split_lines_keeps_the_unfinished_rest():
    assert split_lines(b"par", b"tial\nnext\nhalf") == ([b"partial", b"next"], b"half")


def test_datagrams_carry_priority_and_tag_and_cut_long_lines():
    assert syslog_datagrams("app", "stderr", [b"oops"]) == [b"<11>warden.app: oops"]
    long = syslog_datagrams("app", "stdout", [b"x" * 10000])
    assert len(long) == 2 and long[0].startswith(b"<14>warden.app: ")


def test_job_output_is_copied_to_syslog(tmp_path):
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(path)
        syslog.settimeout(10)
        settings = fake_settings(tmp_path, server={"syslog_socket": path})
        with running_server(settings, FAKE_DRIVERS), Client(settings.server.unix_domain_path) as c:
            h = c.create().handle
            resp = c.run(handle=h, script=b"echo one; echo two; echo bad >&2; printf tail",
                         log_tag="app")
            assert resp.stdout == b"one\ntwo\ntail"
            got = {syslog.recv(4096) for _ in range(4)}
    assert got == {b"<14>warden.app: one", b"<14>warden.app: two", b"<11>warden.app: bad",
                   b"<14>warden.app: tail"}
