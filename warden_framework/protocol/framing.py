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

    Feed it bytes as they arrive; it returns every payload completed so far. It keeps
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

    @property
    def pending(self) -> int:
        """Bytes held back as the start of an incomplete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data` from the stream; return the payloads of all frames it completed.

        Raises FrameError when the stream is malformed; its `frames` attribute holds the
        payloads completed by this call before the bad frame, in order.
        """
        if self._error is not None:
            raise self._error
        self._buffer += data
        frames: list[bytes] = []
        try:
            self._drain(frames)
        except FrameError as error:
            error.frames = frames
            self._error = error
            self._buffer.clear()
            raise
        return frames

    def _drain(self, frames: list[bytes]) -> None:
        buf = self._buffer
        pos = 0
        try:
            while True:
                if self._length is None:
                    header = self._parse_prefix(pos)
                    if header is None:
                        return
                    pos, self._length = header
                end = pos + self._length
                if len(buf) < end + 2:
                    return
                if buf[end : end + 2] != CRLF:
                    raise FrameError(
                        f"frame of {self._length} bytes is not followed by CRLF "
                        f"(got {bytes(buf[end : end + 2])!r})"
                    )
                frames.append(bytes(buf[pos:end]))
                pos = end + 2
                self._length = None
        finally:
            del buf[:pos]

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
