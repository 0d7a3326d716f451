"""FrameDecoder's receive-in-place side (get_buffer / buffer_updated): the same frames and
errors as `feed` for any read sizes, and a large payload received in its own buffer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden_framework.protocol import FrameDecoder, FrameError
from warden_framework.protocol.framing import MAX_PREFIX, encode_frame


def receive(decoder: FrameDecoder, stream: bytes, sizes: list[int]) -> list[bytes]:
    """Pour `stream` through get_buffer/buffer_updated as recv_into would, asking for the
    sizes in turn; return the frames."""
    frames, pos, turn = [], 0, 0
    while pos < len(stream):
        room = decoder.get_buffer(sizes[turn % len(sizes)])
        n = min(len(room), len(stream) - pos, sizes[turn % len(sizes)] * 3)
        room[:n] = stream[pos:pos + n]
        pos += n
        turn += 1
        frames += decoder.buffer_updated(n)
    return frames


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.lists(st.integers(1, 97), min_size=1, max_size=6))
def test_any_read_sizes_give_the_frames_feed_gives(payloads, sizes):
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    assert receive(decoder, stream, sizes) == payloads == FrameDecoder().feed(stream)
    assert decoder.pending == 0


def test_a_large_payload_is_received_in_its_own_buffer():
    payload = bytes(range(256)) * 4096  # 1 MiB
    decoder = FrameDecoder()
    stream = encode_frame(payload) + encode_frame(b"next")
    assert decoder.buffer_updated(_put(decoder.get_buffer(1024), stream[:1024])) == []
    room = decoder.get_buffer(1024)
    assert len(room) == len(payload) - (1024 - len(b"1048576\r\n"))  # the rest of the payload
    body = room.obj
    assert decoder.buffer_updated(_put(room, stream[1024:1024 + len(room)])) == []
    assert decoder.pending == len(payload)
    frames = receive(decoder, stream[1024 + len(room):], [1024])
    assert frames == [payload, b"next"]
    assert frames[0] is body


def test_in_place_frames_mix_with_fed_bytes():
    decoder = FrameDecoder()
    stream = encode_frame(b"a" * 5000) + encode_frame(b"b" * 3)
    decoder.feed(stream[:100])
    room = decoder.get_buffer(64)
    n = _put(room, stream[100:2000])
    assert decoder.buffer_updated(n) == []
    assert decoder.feed(stream[2000:]) == [b"a" * 5000, b"b" * 3]


def test_missing_crlf_after_an_in_place_payload_raises_and_sticks():
    decoder = FrameDecoder()
    stream = b"5000\r\n" + b"x" * 5000 + b"!!"
    assert receive(decoder, stream[:10], [10]) == []
    with pytest.raises(FrameError, match=r"frame of 5000 bytes is not followed by CRLF \(got b'!!'\)"):
        receive(decoder, stream[10:], [64])
    assert decoder.pending == 0
    with pytest.raises(FrameError):
        decoder.get_buffer(64)


def test_oversize_length_is_refused_before_any_room_is_made_for_it():
    decoder = FrameDecoder(max_frame=100)
    with pytest.raises(FrameError, match="exceeds the maximum of 100 bytes"):
        receive(decoder, b"101\r\n", [64])
    assert decoder.pending == 0


def test_pending_stays_within_one_frame_however_it_is_received():
    decoder = FrameDecoder(max_frame=1000)
    stream = encode_frame(b"z" * 1000) * 2 + b"1000\r\n" + b"z" * 999
    receive(decoder, stream, [7, 300])
    assert decoder.pending == 999 <= 1000 + MAX_PREFIX + 2


def test_more_bytes_than_the_room_held_are_refused():
    decoder = FrameDecoder()
    receive(decoder, b"5000\r\n", [64])
    room = decoder.get_buffer(64)
    with pytest.raises(ValueError, match="do not fit"):
        decoder.buffer_updated(len(room) + 1)


def _put(room: memoryview, data: bytes) -> int:
    n = min(len(room), len(data))
    room[:n] = data[:n]
    return n
