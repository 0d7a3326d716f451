"""Hand-framed output chunks (protocol/output_chunk.py): byte for byte what protobuf writes,
and read back in one parse only when decode_message would give the same message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden_framework.protocol import (
    ProtocolError,
    decode_message,
    encode_frame,
    frame_message,
    pb,
)
from warden_framework.protocol.output_chunk import (
    TRAILER,
    chunk_head,
    decode_chunk,
    varint,
)

# Each side of every varint length boundary the head holds (data, response, envelope).
SIZES = [0, 1, 127, 128, 16383, 16384, 1 << 20]


def protobuf_frame(name: str, data: bytes) -> bytes:
    """The chunk as protobuf itself serialises it, framed: the reference."""
    response = pb.StreamResponse(name=name, data=data)
    envelope = pb.Message(type=pb.Message.Stream, payload=response.SerializeToString())
    return encode_frame(envelope.SerializeToString())


@pytest.mark.parametrize("name", ["stdout", "stderr"])
@pytest.mark.parametrize("size", SIZES)
def test_hand_framed_chunk_equals_the_protobuf_encoding(name, size):
    data = bytes(i % 251 for i in range(size))
    wire = chunk_head(name, size) + data + TRAILER
    assert wire == protobuf_frame(name, data)
    assert wire == frame_message(pb.StreamResponse(name=name, data=data))


@pytest.mark.parametrize("size", [127 - 10, 127 - 9, 127 - 8, 16383 - 11, 16383 - 10, 16383 - 9])
def test_head_is_right_where_only_the_enclosing_lengths_cross_a_varint_boundary(size):
    data = b"x" * size
    assert chunk_head("stdout", size) + data + TRAILER == protobuf_frame("stdout", data)


@pytest.mark.parametrize("name", ["stdout", "stderr"])
@pytest.mark.parametrize("size", SIZES)
def test_decode_chunk_reads_back_what_protobuf_wrote(name, size):
    data = bytes(i % 253 for i in range(size))
    payload = protobuf_frame(name, data).split(b"\r\n", 1)[1][:-2]
    response = decode_chunk(bytearray(payload))
    assert response == pb.StreamResponse(name=name, data=data)
    assert response == decode_message(payload, response=True)


def test_decode_chunk_leaves_every_other_answer_to_decode_message():
    terminal = pb.StreamResponse(exit_status=0, info=pb.InfoResponse(state="active"))
    for message in (terminal, pb.StreamResponse(name="stdout"), pb.StreamResponse(data=b"x"),
                    pb.LinkResponse(exit_status=1, stdout=b"x"), pb.PingResponse()):
        payload = frame_message(message).split(b"\r\n", 1)[1][:-2]
        assert decode_chunk(payload) is None
        assert decode_message(payload, response=True) == message


def test_decode_chunk_refuses_a_name_that_is_not_utf8():
    payload = (b"\x08\x18\x12\x06" + b"\x0a\x01\xff\x12\x01x")
    assert decode_chunk(payload) is None
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        decode_message(payload, response=True)


def test_decode_chunk_refuses_a_payload_length_that_does_not_match():
    payload = frame_message(pb.StreamResponse(name="stdout", data=b"abc")).split(b"\r\n", 1)[1][:-2]
    assert decode_chunk(payload + b"\x00") is None
    assert decode_chunk(payload[:-1]) is None


def test_varint_refuses_a_negative_length():
    with pytest.raises(ValueError, match="negative"):
        varint(-1)


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.binary(max_size=60),
    st.binary(max_size=40).map(lambda rest: b"\x08\x18\x12" + rest),
    st.tuples(st.text(max_size=8), st.binary(max_size=30)).map(
        lambda nd: frame_message(pb.StreamResponse(name=nd[0], data=nd[1])).split(b"\r\n", 1)[1][:-2]),
))
def test_decode_chunk_agrees_with_decode_message_whenever_it_answers(payload):
    response = decode_chunk(payload)
    if response is None:
        return
    assert response == decode_message(payload, response=True)
