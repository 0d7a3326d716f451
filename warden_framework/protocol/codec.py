"""Warden messages to envelope bytes and back (warden-facts §1.2-1.4).

Owns the type-code table, the envelope, and the checks the original's decoder made that
our all-optional .proto does not: required fields, closed enums, UTF-8 in string fields.
Framing is framing.py; sockets belong to the server and the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from warden_framework.protocol.descriptors import is_repeated
from warden_framework.protocol.output_chunk import TRAILER, chunk_head
from warden_framework.protocol.errors import ProtocolError
from warden_framework.protocol.framing import encode_frame
from warden_framework.protocol.pb import warden_pb2 as pb

__all__ = [
    "ENUM_FIELDS",
    "ERROR_TYPE",
    "MESSAGE_TYPES",
    "REQUIRED_FIELDS",
    "ProtocolError",
    "decode_message",
    "encode_message",
    "error_response",
    "frame_message",
    "request_class",
    "response_class",
    "response_class_for",
    "type_code",
]

T = pb.Message

ERROR_TYPE: int = T.Error
"""Envelope type of an ErrorResponse, whatever the request was."""

MESSAGE_TYPES: dict[int, tuple[type[ProtoMessage], type[ProtoMessage]]] = {
    T.Create: (pb.CreateRequest, pb.CreateResponse),
    T.Stop: (pb.StopRequest, pb.StopResponse),
    T.Destroy: (pb.DestroyRequest, pb.DestroyResponse),
    T.Info: (pb.InfoRequest, pb.InfoResponse),
    T.Spawn: (pb.SpawnRequest, pb.SpawnResponse),
    T.Link: (pb.LinkRequest, pb.LinkResponse),
    T.Run: (pb.RunRequest, pb.RunResponse),
    T.Stream: (pb.StreamRequest, pb.StreamResponse),
    T.NetIn: (pb.NetInRequest, pb.NetInResponse),
    T.NetOut: (pb.NetOutRequest, pb.NetOutResponse),
    T.CopyIn: (pb.CopyInRequest, pb.CopyInResponse),
    T.CopyOut: (pb.CopyOutRequest, pb.CopyOutResponse),
    T.LimitMemory: (pb.LimitMemoryRequest, pb.LimitMemoryResponse),
    T.LimitDisk: (pb.LimitDiskRequest, pb.LimitDiskResponse),
    T.LimitBandwidth: (pb.LimitBandwidthRequest, pb.LimitBandwidthResponse),
    T.LimitCpu: (pb.LimitCpuRequest, pb.LimitCpuResponse),
    T.Ping: (pb.PingRequest, pb.PingResponse),
    T.List: (pb.ListRequest, pb.ListResponse),
    T.Echo: (pb.EchoRequest, pb.EchoResponse),
}
"""Type code -> (request class, response class): the one table of Warden's type codes."""

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "Message": ("type", "payload"),
    "BindMount": ("src_path", "dst_path", "mode"),
    "EchoRequest": ("message",),
    "EchoResponse": ("message",),
    "CreateResponse": ("handle",),
    "StopRequest": ("handle",),
    "DestroyRequest": ("handle",),
    "InfoRequest": ("handle",),
    "SpawnRequest": ("handle", "script"),
    "SpawnResponse": ("job_id",),
    "LinkRequest": ("handle", "job_id"),
    "RunRequest": ("handle", "script"),
    "StreamRequest": ("handle", "job_id"),
    "NetInRequest": ("handle",),
    "NetInResponse": ("host_port", "container_port"),
    "NetOutRequest": ("handle",),
    "CopyInRequest": ("handle", "src_path", "dst_path"),
    "CopyOutRequest": ("handle", "src_path", "dst_path"),
    "LimitMemoryRequest": ("handle",),
    "LimitDiskRequest": ("handle",),
    "LimitBandwidthRequest": ("handle", "rate", "burst"),
    "LimitBandwidthResponse": ("rate", "burst"),
    "LimitCpuRequest": ("handle",),
}
"""Message name -> the fields the original declares `required`, in declaration order."""

ENUM_FIELDS: dict[tuple[str, str], EnumDescriptor] = {
    ("Message", "type"): pb.Message.Type.DESCRIPTOR,
    ("BindMount", "mode"): pb.BindMount.Mode.DESCRIPTOR,
    ("NetOutRequest", "protocol"): pb.NetOutRequest.Protocol.DESCRIPTOR,
}
"""(message name, field) -> its enum, for the int32 fields that carry an enum (see .proto)."""

_CODES: dict[type[ProtoMessage], int] = {
    pb.ErrorResponse: ERROR_TYPE,
    **{cls: code for code, pair in MESSAGE_TYPES.items() for cls in pair},
}


def type_code(message: ProtoMessage | type[ProtoMessage]) -> int:
    """Return the envelope type of a request or response (class or instance)."""
    cls = message if isinstance(message, type) else type(message)
    try:
        return _CODES[cls]
    except KeyError:
        raise ProtocolError(f"{cls.__name__} is not a Warden request or response") from None


def request_class(code: int) -> type[ProtoMessage]:
    """Return the request class of envelope type `code`; ProtocolError if there is none."""
    try:
        return MESSAGE_TYPES[code][0]
    except KeyError:
        raise ProtocolError(f"Unknown request type: {code}") from None


def response_class(code: int) -> type[ProtoMessage]:
    """Return the response class of envelope type `code` (ErrorResponse for 1)."""
    if code == ERROR_TYPE:
        return pb.ErrorResponse
    try:
        return MESSAGE_TYPES[code][1]
    except KeyError:
        raise ProtocolError(f"Unknown response type: {code}") from None


def response_class_for(request: ProtoMessage | type[ProtoMessage]) -> type[ProtoMessage]:
    """Return the class of the normal answer to `request` (class or instance)."""
    request_cls = request if isinstance(request, type) else type(request)
    code = type_code(request_cls)
    if code == ERROR_TYPE or MESSAGE_TYPES[code][0] is not request_cls:
        raise ProtocolError(f"{request_cls.__name__} is not a Warden request")
    return MESSAGE_TYPES[code][1]


def error_response(text: str | bytes) -> pb.ErrorResponse:
    """Return an ErrorResponse carrying `text` as its message (the only field Warden fills).

    A str is encoded as UTF-8; lone surrogates (from os.fsdecode of a non-UTF-8 path)
    turn back into their original bytes.
    """
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    return pb.ErrorResponse(message=text)


def encode_message(message: ProtoMessage, *, validate: bool = True) -> bytes:
    """Wrap a request or response in its envelope and return the envelope's bytes.

    Called: by the server for every response and by clients for every request; the
    result still needs framing (encode_frame, or frame_message for both steps).
    May assume: nothing about `message` beyond being one of the classes in pb.
    Returns: `Message{type, payload}` bytes. The type is the message's code (1 for an
    ErrorResponse); the payload is always present, also when empty (the Ruby decoder
    rejects an envelope without it); empty repeated fields are omitted.
    On failure: raises ProtocolError when `message` is not a Warden message, or, with
    `validate`, when a required field is missing or an enum field is out of range.
    Tests MAY pass validate=False to send what a broken client would.
    """
    code = type_code(message)
    if validate:
        _raise_first(_problems(message, "", decoded=False), message)
    envelope = pb.Message(type=code, payload=message.SerializeToString())
    return envelope.SerializeToString()


def frame_message(message: ProtoMessage, *, validate: bool = True) -> bytes:
    """Return `message` enveloped and framed, ready to write to the socket."""
    if type(message) is pb.StreamResponse and _OUTPUT_CHUNK == {
            field.name for field, _ in message.ListFields()}:
        return _frame_output_chunk(message.name, message.data)
    return encode_frame(encode_message(message, validate=validate))


_OUTPUT_CHUNK = {"name", "data"}


def _frame_output_chunk(name: str, data: bytes) -> bytes:
    """A StreamResponse{name, data} framed in one join: the bytes upb writes, without its
    two serialisations of the payload, which cost the server more than half its CPU when
    streaming a job's output (bench/profile.py --workload stream). The head is
    output_chunk's, which the sendfile path (server/stream_out.py) sends the same way.
    """
    return b"".join((chunk_head(name, len(data)), data, TRAILER))


def decode_message(data: bytes, *, response: bool = False) -> ProtoMessage:
    """Decode envelope bytes (one frame's payload) into the request or response inside.

    Called: by the server on every frame (response=False) and by clients on every
    frame they read (response=True, where type 1 gives an ErrorResponse).
    May assume: `data` is exactly one frame's payload.
    Returns: a new message of the class the envelope type names. String fields hold
    str, bytes fields bytes; enum-valued fields hold the number as sent, in range or not.
    On failure: raises ProtocolError naming the problem: an undecodable envelope or
    payload, `Unknown request type: N` (or `Unknown response type: N`), a missing
    required field, or a string field that is not valid UTF-8. Framing is unaffected,
    so the caller MAY answer with an ErrorResponse and go on reading.
    """
    envelope = _parse(pb.Message, data, "envelope")
    _raise_first(_problems(envelope, "", decoded=True), envelope)
    cls = response_class(envelope.type) if response else request_class(envelope.type)
    message = _parse(cls, envelope.payload, cls.__name__)
    _raise_first(_problems(message, "", decoded=True), message)
    return message


def _parse(cls: type[ProtoMessage], data: bytes, what: str) -> ProtoMessage:
    message = cls()
    try:
        message.ParseFromString(data)
    except DecodeError as error:
        raise ProtocolError(f"undecodable {what}: {error}") from None
    return message


def _raise_first(problems: Iterator[str], message: ProtoMessage) -> None:
    for problem in problems:
        raise ProtocolError(f"{type(message).__name__}: {problem}")


def _problems(message: ProtoMessage, prefix: str, *, decoded: bool) -> Iterator[str]:
    """Yield what is wrong with `message` (recursively), as `field <path> ...` texts."""
    name = message.DESCRIPTOR.name
    for field in REQUIRED_FIELDS.get(name, ()):
        if not message.HasField(field):
            yield f"field {prefix}{field} is required but missing"
    for field, value in message.ListFields():
        path = prefix + field.name
        if is_repeated(field):
            for index, item in enumerate(value):
                yield from _field_problems(name, field, item, f"{path}[{index}]", decoded=decoded)
        else:
            yield from _field_problems(name, field, value, path, decoded=decoded)


def _field_problems(
    owner: str, field: FieldDescriptor, value: Any, path: str, *, decoded: bool
) -> Iterator[str]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        yield from _problems(value, path + ".", decoded=decoded)
    elif field.type == FieldDescriptor.TYPE_STRING and not isinstance(value, str):
        # upb hands back bytes for a proto2 string field that is not valid UTF-8.
        yield f"field {path} is not valid UTF-8: {value!r}"
    elif not decoded and (owner, field.name) in ENUM_FIELDS:
        enum = ENUM_FIELDS[owner, field.name]
        if value not in enum.values_by_number:
            choices = ", ".join(f"{v.name}={v.number}" for v in enum.values)
            yield f"field {path} has invalid value {value} (expected one of {choices})"
