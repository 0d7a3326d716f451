"""The `warden` REPL on a real terminal (a pty): TAB completion, history, Ctrl-C; and
that piped use stays as it was: no readline, no history file."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from warden_framework.client.repl import HISTORY_LENGTH, history_path
from warden_framework.protocol import pb

_TIMEOUT = 4.0
_CLI = [sys.executable, "-m", "warden_framework.client.cli"]
_PROMPT = b"warden> "


class Terminal:
    """The master side of a pty whose slave is a `warden` REPL's stdin, stdout and stderr."""

    def __init__(self, args: list[str], env: dict[str, str], *, stdout: int | None = None):
        self.master, slave = os.openpty()
        try:
            self.process = subprocess.Popen(
                [*_CLI, *args],
                stdin=slave,
                stdout=slave if stdout is None else stdout,
                stderr=slave,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self.seen = b""  # everything read so far
        self._unread = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def expect(self, text: bytes) -> bytes:
        """Read until `text` appears; return what came up to and including it."""
        deadline = time.monotonic() + _TIMEOUT
        while text not in self._unread:
            if not self._read_some(deadline):
                raise AssertionError(f"{text!r} never came; the terminal showed {self.seen!r}")
        head, _, self._unread = self._unread.partition(text)
        return head + text

    def finish(self) -> tuple[int, bytes]:
        """Wait for the REPL to exit; return its status and what it wrote after the last expect."""
        status = self.process.wait(_TIMEOUT)
        deadline = time.monotonic() + _TIMEOUT
        while self._read_some(deadline):
            pass
        return status, self._unread

    def interrupt(self) -> None:
        """SIGINT, once the REPL waits for a key: CPython runs its SIGINT handler only when
        readline's select() is interrupted, so a signal landing while readline handles a
        key is held back until the next key, and a test would wait for nothing."""
        deadline = time.monotonic() + _TIMEOUT
        while not _waiting_for_input(self.process.pid):
            assert time.monotonic() < deadline, f"the REPL never waited for input: {self.seen!r}"
            time.sleep(0.005)
        self.process.send_signal(signal.SIGINT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)

    def _read_some(self, deadline: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: the REPL has exited and closed the slave
            return False
        self.seen += data
        self._unread += data
        return bool(data)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def environment(home: Path) -> dict[str, str]:
    """A temp HOME and history file; TERM=dumb and no inputrc, so readline echoes plainly."""
    env = {k: v for k, v in os.environ.items() if k not in ("WARDEN_SOCKET", "WARDEN_HISTORY")}
    return env | {
        "HOME": str(home), "WARDEN_HISTORY": str(home / "history"), "TERM": "dumb",
        "INPUTRC": os.devnull,
    }  # fmt: skip


@pytest.fixture
def terminal(environment):
    """Start REPLs on ptys: `terminal(socket_path)`; each is killed and closed at the end."""
    terminals: list[Terminal] = []

    def start(socket_path, env=None, **kwargs) -> Terminal:
        term = Terminal(["--socket", str(socket_path)], env or environment, **kwargs)
        terminals.append(term)
        return term

    yield start
    for term in terminals:
        term.close()


def answer(request):
    """The fake server: what each request the tests send gets back."""
    answers = {
        pb.CreateRequest: pb.CreateResponse(handle=b"h1"),
        pb.NetOutRequest: pb.NetOutResponse(),
        pb.PingRequest: pb.PingResponse(),
        pb.ListRequest: pb.ListResponse(handles=[b"a"]),
    }
    return [answers[type(request)]]


def test_tab_completes_and_history_is_saved_on_exit(fake_server, terminal, home):
    server = fake_server(answer)
    term = terminal(server.path)
    term.expect(_PROMPT)
    term.type(b"cre\t")
    term.expect(b"create ")
    term.type(b"--gr\t")
    term.expect(b"--grace_time ")
    term.type(b"30\n")
    term.expect(b"handle: h1")
    term.expect(_PROMPT)
    term.type(b"net-out h --protocol=ic\t")
    term.expect(b"--protocol=icmp ")
    term.type(b"\nexit\n")
    status, _ = term.finish()
    assert status == 0
    assert server.requests == [
        pb.CreateRequest(grace_time=30),
        pb.NetOutRequest(handle=b"h", protocol=pb.NetOutRequest.ICMP),
    ]
    history = home / "history"
    assert history.read_text().splitlines() == [
        "create --grace_time 30", "net-out h --protocol=icmp ", "exit",
    ]  # fmt: skip
    assert history.stat().st_mode & 0o777 == 0o600  # scripts typed may hold secrets


def test_history_is_loaded_deduplicated_and_capped(fake_server, terminal, home):
    old = [f"echo old{n}" for n in range(HISTORY_LENGTH + 4)] + ["ping"]
    (home / "history").write_text("".join(line + "\n" for line in old))
    server = fake_server(answer)
    term = terminal(server.path)
    term.expect(_PROMPT)
    term.type(b"\x10")  # Ctrl-P: the previous line, from the file
    term.expect(b"ping")
    term.type(b"\n")
    term.expect(_PROMPT)
    term.type(b"ping\nlist\n")
    term.expect(b"handles[0]: a")
    term.type(b"exit\n")
    assert term.finish()[0] == 0
    assert server.requests == [pb.PingRequest(), pb.PingRequest(), pb.ListRequest()]
    saved = (home / "history").read_text().splitlines()
    assert saved == [*old, "list", "exit"][-HISTORY_LENGTH:]


def test_unusable_history_file_warns_once(fake_server, terminal, environment, home):
    (home / "file").write_text("")
    path = home / "file" / "history"  # under a regular file: ENOTDIR, also for root
    server = fake_server(answer)
    term = terminal(server.path, env=environment | {"WARDEN_HISTORY": str(path)})
    term.expect(_PROMPT)
    term.type(b"ping\nexit\n")
    status, _ = term.finish()
    assert status == 0 and server.requests == [pb.PingRequest()]
    assert term.seen.count(b"warden: cannot ") == 1
    assert f"warden: cannot read history file {path}: Not a directory".encode() in term.seen


def test_ctrl_c_abandons_the_line_or_the_command_and_the_repl_goes_on(fake_server, terminal):
    release = threading.Event()

    def hang_on_link(request):
        if isinstance(request, pb.LinkRequest):
            release.wait(_TIMEOUT)
            return None
        return answer(request)

    server = fake_server(hang_on_link)
    term = terminal(server.path)
    try:
        term.expect(_PROMPT)
        term.type(b"pin")
        term.expect(b"pin")
        term.interrupt()
        term.expect(_PROMPT)
        term.type(b"list\n")  # "pin" was dropped: this is list, not pinlist
        term.expect(b"handles[0]: a")
        term.type(b"link h 1\n")
        _wait_for(lambda: len(server.requests) == 2)
        term.process.send_signal(signal.SIGINT)  # in Python code: handled at once
        term.expect(_PROMPT)
        term.type(b"ping\n")  # on a new connection: the old one still waits for link
        term.expect(_PROMPT)
        term.type(b"link h 2\n")
        _wait_for(lambda: len(server.requests) == 4)
        term.process.send_signal(signal.SIGINT)
        term.expect(_PROMPT)
        term.type(b"exit\n")
        status, _ = term.finish()
    finally:
        release.set()
    assert status == 130  # the last command was interrupted
    assert server.requests == [
        pb.ListRequest(),
        pb.LinkRequest(handle=b"h", job_id=1),
        pb.PingRequest(),
        pb.LinkRequest(handle=b"h", job_id=2),
    ]


def test_terminal_stdin_with_redirected_stdout_prompts_on_stderr(fake_server, terminal, home):
    server = fake_server(answer)
    term = terminal(server.path, stdout=subprocess.PIPE)
    term.expect(_PROMPT)
    term.type(b"list\nexit\n")
    status, _ = term.finish()
    assert status == 0
    assert term.process.stdout.read() == b"handles[0]: a\n"  # no prompt mixed in
    term.process.stdout.close()
    assert not (home / "history").exists()


def test_piped_stdin_uses_no_readline_and_writes_no_history(fake_server, environment, home):
    server = fake_server(answer)
    probe = (
        "import sys; from warden_framework.client.cli import main; status = main(); "
        "print('readline' in sys.modules, file=sys.stderr); sys.exit(status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, "--socket", str(server.path)],
        input=b"ping\nlist\nexit\n",
        capture_output=True,
        check=False,
        env=environment,
        timeout=_TIMEOUT,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"handles[0]: a\n", b"False\n")
    assert list(home.iterdir()) == []


def test_history_path_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("WARDEN_HISTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert history_path() == str(tmp_path / ".warden_history")
    monkeypatch.setenv("WARDEN_HISTORY", "/somewhere/else")
    assert history_path() == "/somewhere/else"


def _waiting_for_input(pid: int) -> bool:
    """True while `pid` sleeps in select/poll (readline waiting for a key), by its wchan."""
    wchan = Path(f"/proc/{pid}/wchan").read_text()
    return "poll" in wchan or "select" in wchan


def _wait_for(condition) -> None:
    deadline = time.monotonic() + _TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "the fake server never got the request"
        time.sleep(0.01)
