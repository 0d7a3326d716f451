"""The `warden` REPL: one command per line, with readline history and completion on a terminal.

Owns the loop and the terminal: reading lines, Ctrl-C and Ctrl-D, the history file,
binding completion.complete to TAB. What a line does is the caller's `run` (cli.py).
readline is imported only when stdin and stdout are terminals: importing it may write
to the terminal, and piped use must stay byte-for-byte what it was.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from warden_framework.client.completion import complete

__all__ = ["HISTORY_LENGTH", "PROMPT", "history_path", "repl"]

PROMPT = "warden> "
HISTORY_LENGTH = 1000
"""Lines kept in the history file; older ones are dropped when it is written."""

_INTERRUPTED = 130  # a shell's status for a command ended by SIGINT


def history_path() -> str:
    """$WARDEN_HISTORY, else ~/.warden_history."""
    return os.environ.get("WARDEN_HISTORY") or os.path.join(
        os.path.expanduser("~"), ".warden_history"
    )


def repl(
    run: Callable[[Sequence[str]], int],
    lines: TextIO,
    out: TextIO,
    err: TextIO,
    *,
    on_interrupt: Callable[[], None],
) -> int:
    """Run each line of `lines` as a command until EOF or `exit`; return the last status.

    On a terminal Ctrl-C abandons the line being typed, or the command running (then
    `on_interrupt` runs, so a half-read answer is not taken for the next command's);
    elsewhere it stops the REPL as it stops any program.
    """
    if not lines.isatty():
        return _loop(run, _piped_reader(lines), err, on_interrupt=None)
    if lines is not sys.stdin or out is not sys.stdout or not out.isatty():
        # input() edits lines with readline only when both ends are the terminal.
        return _loop(run, _prompting_reader(lines, err), err, on_interrupt=on_interrupt)
    with _readline_session(err) as read:
        return _loop(run, read, err, on_interrupt=on_interrupt)


def _loop(
    run: Callable[[Sequence[str]], int],
    read: Callable[[], str | None],
    err: TextIO,
    *,
    on_interrupt: Callable[[], None] | None,
) -> int:
    status = 0
    while True:
        try:
            line = read()
        except KeyboardInterrupt:
            if on_interrupt is None:
                raise
            err.write("\n")
            continue
        if line is None:
            return status
        try:
            words = shlex.split(line, comments=True)
        except ValueError as error:
            err.write(f"warden: {error}\n")
            status = 2
            continue
        if words and words[0] in ("exit", "quit"):
            return status
        if not words:
            continue
        try:
            status = run(words)
        except KeyboardInterrupt:
            if on_interrupt is None:
                raise
            on_interrupt()
            err.write("\n")
            status = _INTERRUPTED


def _piped_reader(lines: TextIO) -> Callable[[], str | None]:
    return lambda: lines.readline() or None


def _prompting_reader(lines: TextIO, err: TextIO) -> Callable[[], str | None]:
    def read() -> str | None:
        err.write(PROMPT)
        err.flush()
        return lines.readline() or None

    return read


@contextlib.contextmanager
def _readline_session(err: TextIO) -> Iterator[Callable[[], str | None]]:
    """Load the history and bind completion; on the way out save the history."""
    import readline  # here, not at the top: see the module docstring

    history = _History(readline, history_path(), err)
    history.load()
    saved = readline.get_completer(), readline.get_completer_delims()
    readline.set_completer(_completer(readline))
    readline.set_completer_delims(" \t\n=")
    readline.parse_and_bind(_tab_binding(readline))
    readline.set_auto_history(False)

    def read() -> str | None:
        try:
            line = input(PROMPT)
        except EOFError:
            sys.stdout.write("\n")
            return None
        history.add(line)
        return line

    try:
        yield read
    finally:
        readline.set_completer(saved[0])
        readline.set_completer_delims(saved[1])
        history.save()


class _History:
    """The history file: a missing one is a first run; any other trouble is said once."""

    def __init__(self, readline: Any, path: str, err: TextIO) -> None:
        self.readline = readline
        self.path = path
        self.err = err
        self.warned = False

    def load(self) -> None:
        self.readline.set_history_length(HISTORY_LENGTH)
        try:
            self.readline.read_history_file(self.path)
        except FileNotFoundError:
            pass
        except OSError as error:
            self._warn("read", error)

    def add(self, line: str) -> None:
        """Keep a line unless it is blank or repeats the one before (as bash's ignoredups)."""
        length = self.readline.get_current_history_length()
        last = self.readline.get_history_item(length) if length else None
        if line.strip() and line != last:
            self.readline.add_history(line)

    def save(self) -> None:
        try:  # GNU readline creates it 0600: scripts typed at the prompt may hold secrets
            self.readline.write_history_file(self.path)
        except OSError as error:
            self._warn("write", error)

    def _warn(self, action: str, error: OSError) -> None:
        if not self.warned:
            self.warned = True
            reason = error.strerror or str(error)
            self.err.write(f"warden: cannot {action} history file {self.path}: {reason}\n")


def _completer(readline: Any) -> Callable[[str, int], str | None]:
    """readline's completer protocol: called with state 0, 1, ... until it returns None."""
    matches: list[str] = []

    def completer(word: str, state: int) -> str | None:
        if state == 0:
            matches[:] = complete(readline.get_line_buffer()[: readline.get_endidx()], word)
        return matches[state] if state < len(matches) else None

    return completer


def _tab_binding(readline: Any) -> str:
    if "libedit" in (readline.__doc__ or ""):  # macOS's readline speaks editline's syntax
        return "bind ^I rl_complete"
    return "tab: complete"
