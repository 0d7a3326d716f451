"""The bytes around the data of a framed output chunk, StreamResponse{name, data} (issue 14).

A Stream answer's output chunk on the wire is `frame(Message{type: Stream, payload:
StreamResponse{name, data}})`. Every byte of it but the data depends only on the name and
the data's length, so a sender may write `chunk_head`, then the data from wherever it lies (a
file, by sendfile), then `TRAILER`, and the peer receives exactly what
`frame_message(pb.StreamResponse(name=name, data=data))` gives: protobuf writes the fields
of a message in field-number order, and these two messages have only the fields below.
tests/unit/protocol/test_output_chunk.py holds that equality for lengths across the varint
boundaries. `decode_chunk` is the reading side: such a payload parsed once, in place.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from warden_framework.protocol.pb import warden_pb2 as pb

__all__ = ["TRAILER", "chunk_head", "decode_chunk", "varint"]

TRAILER = b"\r\n"
"""What ends every frame (framing.py)."""

# Tags: (field number << 3) | wire type, 0 for a varint and 2 for length-delimited bytes.
_ENVELOPE_TYPE = b"\x08"  # Message.type = 1
_ENVELOPE_PAYLOAD = b"\x12"  # Message.payload = 2
_CHUNK_NAME = b"\x0a"  # StreamResponse.name = 1
_CHUNK_DATA = b"\x12"  # StreamResponse.data = 2
_STREAM = pb.Message.Stream


def varint(value: int) -> bytes:
    """`value` (not negative) as a protobuf base-128 varint, low seven bits first."""
    if value < 0:
        raise ValueError(f"a varint length cannot be negative: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def chunk_head(name: str, size: int) -> bytes:
    """Everything a framed StreamResponse{name, data} holds before its `size` data bytes:
    the frame's length prefix and CRLF, the envelope's type and payload tag and length, and
    the response's name field and data tag and length."""
    text = name.encode()
    response_head = b"%b%b%b%b%b" % (_CHUNK_NAME, varint(len(text)), text, _CHUNK_DATA,
                                     varint(size))
    response_len = len(response_head) + size
    envelope_head = b"%b%b%b%b" % (_ENVELOPE_TYPE, varint(_STREAM), _ENVELOPE_PAYLOAD,
                                   varint(response_len))
    return b"%d\r\n%b%b" % (len(envelope_head) + response_len, envelope_head, response_head)


def decode_chunk(payload: bytes | bytearray) -> pb.StreamResponse | None:
    """The StreamResponse{name, data} in a frame's `payload` when the payload is a Stream
    envelope holding exactly such an output chunk; None for anything else, which
    codec.decode_message must decode (and check).

    Parsed once, straight from the payload: decode_message parses the envelope, copies its
    payload out and parses that, three copies of a megabyte chunk where this makes one.
    What it accepts passes decode_message's checks too: an envelope with both fields and a
    known type, a response with no required field and a `name` that is valid UTF-8.
    """
    view = memoryview(payload)
    if view[:2] != _ENVELOPE_TYPE + varint(_STREAM) or view[2:3] != _ENVELOPE_PAYLOAD:
        return None
    length, start = _read_varint(view, 3)
    if length != len(view) - start:
        return None
    try:
        response = pb.StreamResponse.FromString(view[start:])
    except DecodeError:
        return None
    if _CHUNK_FIELDS != {field.name for field, _ in response.ListFields()}:
        return None
    return response if isinstance(response.name, str) else None


_CHUNK_FIELDS = {"name", "data"}


def _read_varint(view: memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; (-1, pos) when cut short."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(view))):
        value |= (view[i] & 0x7F) << shift
        if view[i] < 0x80:
            return value, i + 1
        shift += 7
    return -1, pos
