"""The Warden wire protocol: frames (framing.py), envelopes and messages (codec.py, pb/).

Import what the server and clients need from here; `pb` is the generated message module.
"""

from warden_framework.protocol.codec import (
    ERROR_TYPE,
    MESSAGE_TYPES,
    REQUIRED_FIELDS,
    decode_message,
    encode_message,
    error_response,
    frame_message,
    request_class,
    response_class,
    response_class_for,
    type_code,
)
from warden_framework.protocol.errors import FrameError, ProtocolError
from warden_framework.protocol.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from warden_framework.protocol.pb import warden_pb2 as pb

__all__ = [
    "DEFAULT_MAX_FRAME",
    "ERROR_TYPE",
    "MESSAGE_TYPES",
    "REQUIRED_FIELDS",
    "FrameDecoder",
    "FrameError",
    "ProtocolError",
    "decode_message",
    "encode_frame",
    "encode_message",
    "error_response",
    "frame_message",
    "pb",
    "request_class",
    "response_class",
    "response_class_for",
    "type_code",
]
