"""Property tests: any message round-trips, any split of a stream decodes the same frames,
and no input makes the decoders raise anything but ProtocolError or hold too much."""

from __future__ import annotations

import contextlib

from google.protobuf.descriptor import FieldDescriptor as F
from hypothesis import given, settings
from hypothesis import strategies as st

from warden_framework.protocol import (
    MESSAGE_TYPES,
    REQUIRED_FIELDS,
    FrameDecoder,
    FrameError,
    ProtocolError,
    decode_message,
    encode_message,
    pb,
)
from warden_framework.protocol.codec import ENUM_FIELDS
from warden_framework.protocol.descriptors import is_repeated
from warden_framework.protocol.framing import MAX_PREFIX, encode_frame

_SCALARS = {
    F.TYPE_BYTES: st.binary(max_size=40),
    F.TYPE_STRING: st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    F.TYPE_BOOL: st.booleans(),
    F.TYPE_UINT32: st.integers(0, 2**32 - 1),
    F.TYPE_UINT64: st.integers(0, 2**64 - 1),
    F.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
}


def _value(field):
    if field.type == F.TYPE_MESSAGE:
        return messages(field.message_type._concrete_class)
    enum = ENUM_FIELDS.get((field.containing_type.name, field.name))
    if enum is not None:
        return st.sampled_from([value.number for value in enum.values])
    return _SCALARS[field.type]


@st.composite
def messages(draw, cls):
    """Any valid instance of `cls`: required fields set, the others maybe."""
    message = cls()
    required = REQUIRED_FIELDS.get(cls.DESCRIPTOR.name, ())
    for field in cls.DESCRIPTOR.fields:
        if is_repeated(field):
            items = draw(st.lists(_value(field), max_size=3))
            target = getattr(message, field.name)
            for item in items:
                target.add().CopyFrom(item) if field.type == F.TYPE_MESSAGE else target.append(item)
        elif field.name in required or draw(st.booleans()):
            value = draw(_value(field))
            if field.type == F.TYPE_MESSAGE:
                getattr(message, field.name).CopyFrom(value)
            else:
                setattr(message, field.name, value)
    return message


_CLASSES = [cls for pair in MESSAGE_TYPES.values() for cls in pair] + [pb.ErrorResponse]
_RESPONSES = {response for _, response in MESSAGE_TYPES.values()} | {pb.ErrorResponse}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_CLASSES).flatmap(messages))
def test_any_message_round_trips_through_the_codec(message):
    decoded = decode_message(encode_message(message), response=type(message) in _RESPONSES)
    assert decoded == message
    assert type(decoded) is type(message)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_bytes_fields_carry_any_bytes(handle, output):
    request = pb.StreamRequest(handle=handle, job_id=1)
    response = pb.StreamResponse(name="stdout", data=output)
    assert decode_message(encode_message(request)).handle == handle
    assert decode_message(encode_message(response), response=True).data == output


@st.composite
def split_stream(draw):
    payloads = draw(st.lists(st.binary(max_size=50), max_size=8))
    stream = b"".join(encode_frame(p) for p in payloads)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    return payloads, [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=300, deadline=None)
@given(split_stream())
def test_any_split_of_a_frame_stream_decodes_to_the_same_payloads(case):
    payloads, pieces = case
    decoder = FrameDecoder()
    got = [frame for piece in pieces for frame in decoder.feed(piece)]
    assert got == payloads
    assert decoder.pending == 0


_CHUNK = st.one_of(
    st.binary(max_size=40),
    st.binary(max_size=40).map(encode_frame),
    st.integers(0, 10**6).map(lambda n: b"%d\r\n" % n),
    st.sampled_from([b"\r", b"\n", b"\r\n", b"0", b"9" * 25]),
)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 64), st.lists(_CHUNK, max_size=20))
def test_garbage_raises_only_frame_errors_and_never_overbuffers(max_frame, chunks):
    decoder = FrameDecoder(max_frame=max_frame)
    for chunk in chunks:
        try:
            frames = decoder.feed(chunk)
        except FrameError:
            assert decoder.pending == 0
            return
        assert all(len(frame) <= max_frame for frame in frames)
        assert decoder.pending <= max_frame + MAX_PREFIX + 2


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_garbage_envelopes_raise_only_protocol_errors(data, response):
    with contextlib.suppress(ProtocolError):
        decode_message(data, response=response)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(MESSAGE_TYPES)), st.binary(max_size=60))
def test_garbage_payloads_raise_only_protocol_errors(code, payload):
    data = pb.Message(type=code, payload=payload).SerializeToString()
    try:
        message = decode_message(data)
    except ProtocolError:
        return
    assert type(message) is MESSAGE_TYPES[code][0]
