"""The protocol's exceptions: bad frames and bad messages. Never sent to a client as such."""

from __future__ import annotations

__all__ = ["FrameError", "ProtocolError"]


class ProtocolError(Exception):
    """Bytes that are not a valid Warden message, or a message that cannot be sent.

    Raised for an undecodable envelope or payload, an unknown type code, a missing
    required field, a string field that is not UTF-8, or an enum value out of range.
    The frame boundaries are intact, so a server may answer and keep the connection.
    """


class FrameError(ProtocolError):
    """The byte stream is not a sequence of frames; the connection cannot continue.

    `frames` holds the payloads completed before the bad frame in the same `feed` call.
    """

    frames: list[bytes]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.frames = []
