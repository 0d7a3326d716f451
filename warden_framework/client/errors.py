"""What a client raises when the server answers with an ErrorResponse."""

from __future__ import annotations

from google.protobuf.message import Message as ProtoMessage

from warden_framework.protocol.pb import warden_pb2 as pb

__all__ = ["ServerError", "raise_for_error"]


class ServerError(Exception):
    """The server answered a request with an ErrorResponse; `message` is its text."""

    def __init__(self, response: pb.ErrorResponse) -> None:
        self.response = response
        self.message = response.message.decode("utf-8", "replace")
        super().__init__(self.message)


def raise_for_error(response: ProtoMessage) -> ProtoMessage:
    """Return `response`, or raise ServerError when it is an ErrorResponse."""
    if isinstance(response, pb.ErrorResponse):
        raise ServerError(response)
    return response
