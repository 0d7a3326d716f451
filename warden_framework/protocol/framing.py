"""Warden frames on a byte stream: `<decimal length>\\r\\n<payload>\\r\\n` (warden-facts §1.1).

Owns splitting a stream into payloads and back; knows nothing of what a payload holds
(that is codec.py) nor of sockets (the server and the client own those).
"""

from __future__ import annotations

from warden_framework.protocol.errors import FrameError

__all__ = ["DEFAULT_MAX_FRAME", "MAX_PREFIX", "FrameDecoder", "encode_frame"]

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
"""Largest payload a decoder accepts unless told otherwise (16 MiB)."""

MAX_PREFIX = 20
"""The length prefix and its CRLF must fit in this many bytes."""

CRLF = b"\r\n"
_DIGITS = frozenset(b"0123456789")


def encode_frame(payload: bytes) -> bytes:
    """Return `payload` framed for the wire: its length in ASCII decimal, CRLF, it, CRLF."""
    return b"%d\r\n%b\r\n" % (len(payload), payload)


class FrameDecoder:
    """Incremental frame parser that accepts the stream in pieces of any size.

    Feed it bytes as they arrive, or let it lend the room to receive them in (get_buffer,
    then buffer_updated: a large payload then lands in its own buffer, uncopied); it
    returns every payload completed so far. It keeps
    at most one partial frame, so it never holds more than `max_frame + MAX_PREFIX + 2`
    bytes between calls. A bad length prefix, a length above `max_frame` (rejected as
    soon as the prefix shows it, before the payload arrives) or a payload not followed
    by CRLF raises FrameError. The stream cannot be resynchronised after that, so the
    error is sticky: every later `feed` raises it again.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 0:
            raise ValueError(f"max_frame must not be negative, got {max_frame}")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._length: int | None = None  # payload length once the prefix is parsed
        self._error: FrameError | None = None
        # A large frame's payload, received in place (get_buffer) and handed out as it is.
        self._body: bytearray | None = None
        self._body_filled = 0
        self._scratch = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back as the start of an incomplete frame."""
        return len(self._buffer) + self._body_filled

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | bytearray]:
        """Add `data` from the stream; return the payloads of all frames it completed.

        Raises FrameError when the stream is malformed; its `frames` attribute holds the
        payloads completed by this call before the bad frame, in order.
        """
        if self._error is not None:
            raise self._error
        if self._body is not None and self._body_filled < len(self._body):
            take = min(len(data), len(self._body) - self._body_filled)
            self._body[self._body_filled : self._body_filled + take] = data[:take]
            self._body_filled += take
            data = data[take:]
        self._buffer += data
        frames: list[bytes | bytearray] = []
        try:
            self._drain(frames)
        except FrameError as error:
            error.frames = frames
            self._error = error
            self._buffer.clear()
            self._body, self._body_filled = None, 0
            raise
        return frames

    def get_buffer(self, size: int) -> memoryview:
        """Writable room for the next bytes of the stream, `size` or more, e.g. for
        socket.recv_into; then pass how many bytes went in to `buffer_updated`.

        Once a frame's length is known and more than `size` of its bytes are still to come,
        the room is the rest of that frame's own buffer: its payload is received in place
        and returned as that bytearray, where `feed` copies every byte twice. Else the room
        is a scratch buffer whose bytes are fed as by `feed`.
        """
        if self._error is not None:
            raise self._error
        buf = self._buffer
        if self._body is None and self._length is not None and self._length - len(buf) > size:
            self._body = bytearray(self._length)
            self._body[: len(buf)] = buf
            self._body_filled = len(buf)
            buf.clear()
        if self._body is not None and self._body_filled < len(self._body):
            return memoryview(self._body)[self._body_filled :]
        if len(self._scratch) < size:
            self._scratch = bytearray(size)
        return memoryview(self._scratch)[:size]

    def buffer_updated(self, nbytes: int) -> list[bytes | bytearray]:
        """Take the `nbytes` written at the start of the room from `get_buffer`; return the
        payloads of all frames completed (a large one as the bytearray it was received
        in). Raises FrameError as `feed` does."""
        in_body = self._body is not None and self._body_filled < len(self._body)
        room = len(self._body) - self._body_filled if in_body else len(self._scratch)
        if not 0 <= nbytes <= room:
            raise ValueError(f"{nbytes} bytes do not fit the room get_buffer gave ({room})")
        if in_body:
            self._body_filled += nbytes
            return self.feed(b"")
        return self.feed(memoryview(self._scratch)[:nbytes])

    def _drain(self, frames: list[bytes | bytearray]) -> None:
        buf = self._buffer
        pos = 0
        try:
            while True:
                if self._length is None:
                    header = self._parse_prefix(pos)
                    if header is None:
                        return
                    pos, self._length = header
                if self._body is not None:  # the payload is in place; its CRLF comes here
                    if self._body_filled < len(self._body) or len(buf) < pos + 2:
                        return
                    self._check_crlf(pos)
                    frames.append(self._body)
                    self._body, self._body_filled = None, 0
                    pos += 2
                else:
                    end = pos + self._length
                    if len(buf) < end + 2:
                        return
                    self._check_crlf(end)
                    frames.append(bytes(memoryview(buf)[pos:end]))
                    pos = end + 2
                self._length = None
        finally:
            del buf[:pos]

    def _check_crlf(self, at: int) -> None:
        found = bytes(self._buffer[at : at + 2])
        if found != CRLF:
            raise FrameError(
                f"frame of {self._length} bytes is not followed by CRLF (got {found!r})"
            )

    def _parse_prefix(self, pos: int) -> tuple[int, int] | None:
        """Return (payload start, length) once the prefix at `pos` is complete, else None."""
        buf = self._buffer
        window = bytes(buf[pos : pos + MAX_PREFIX])
        cr = window.find(b"\r")
        digits = window if cr < 0 else window[:cr]
        if cr == 0 or any(byte not in _DIGITS for byte in digits):
            raise FrameError(f"frame length prefix is not a decimal number: {_show(window)}")
        if digits and int(digits) > self.max_frame:
            raise FrameError(
                f"frame of {int(digits)} bytes exceeds the maximum of {self.max_frame} bytes"
            )
        if cr < 0:
            if len(window) >= MAX_PREFIX:
                raise FrameError(
                    f"frame length prefix has no CRLF within {MAX_PREFIX} bytes: {_show(window)}"
                )
            return None
        if len(window) == cr + 1:
            return None
        if window[cr + 1] != ord("\n"):
            raise FrameError(f"frame length prefix is not a decimal number: {_show(window)}")
        return pos + cr + 2, int(digits)


def _show(data: bytes) -> str:
    return repr(data if len(data) <= MAX_PREFIX else data[:MAX_PREFIX] + b"...")
