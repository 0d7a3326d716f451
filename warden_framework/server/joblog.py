"""`log_tag`: a copy of a job's output lines goes to syslog as `warden.<tag>` (facts §6.4):
stdout at user.info (`<14>`), stderr at user.err (`<11>`), one datagram per line to the
server's syslog socket (`server.syslog_socket`, default /dev/log)."""

from __future__ import annotations

import logging
import socket

from ..jobs import Job

log = logging.getLogger(__name__)
DEFAULT_SOCKET = "/dev/log"
PRIORITY = {"stdout": 14, "stderr": 11}  # user.info, user.err
MAX_LINE = 8192  # longer lines are cut into pieces of this size


def syslog_datagrams(tag: str, name: str, lines: list[bytes]) -> list[bytes]:
    head = f"<{PRIORITY[name]}>warden.{tag}: ".encode()
    return [head + line[i:i + MAX_LINE] for line in lines for i in range(0, max(len(line), 1), MAX_LINE)]


def split_lines(pending: bytes, data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines of pending + data, and the unfinished rest."""
    *lines, rest = (pending + data).split(b"\n")
    return lines, rest


async def forward_output(job: Job, limit: int, socket_path: str | None,
                         start: dict[str, int] | None = None) -> None:
    """Send the job's output lines to syslog until it ends; a missing socket is logged once."""
    path = socket_path or DEFAULT_SOCKET
    pending = {"stdout": b"", "stderr": b""}
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        try:
            offsets = {"stdout": 0, "stderr": 0, **(start or {})}
            async for name, data in job.follow(limit, start):
                lines, pending[name] = split_lines(pending[name], data)
                _send(sock, path, syslog_datagrams(job.log_tag, name, lines))
                offsets[name] += len(data)
                job.log_offsets[name] = offsets[name] - len(pending[name])
            for name, rest in pending.items():
                if rest:
                    _send(sock, path, syslog_datagrams(job.log_tag, name, [rest]))
        except OSError as exc:
            log.warning("job %d: cannot log to syslog at %s: %s", job.id, path, exc)


def _send(sock: socket.socket, path: str, datagrams: list[bytes]) -> None:
    for datagram in datagrams:
        try:
            sock.sendto(datagram, path)
        except BlockingIOError:  # syslog is behind: drop rather than stall the server
            pass
