"""Frames on a byte stream: encoding, fragmentation, and every malformed-stream error."""

from __future__ import annotations

import pytest

from warden_framework.protocol import DEFAULT_MAX_FRAME, FrameDecoder, FrameError, ProtocolError
from warden_framework.protocol.framing import MAX_PREFIX, encode_frame


def test_encode_frame_writes_length_crlf_payload_crlf():
    assert encode_frame(b"abcdef") == b"6\r\nabcdef\r\n"
    assert encode_frame(b"") == b"0\r\n\r\n"


def test_default_max_frame_is_16_mib():
    assert DEFAULT_MAX_FRAME == 16 * 1024 * 1024
    assert FrameDecoder().max_frame == DEFAULT_MAX_FRAME


def test_feed_returns_every_complete_frame_in_order():
    stream = encode_frame(b"one") + encode_frame(b"") + encode_frame(b"\r\n3\r\n")
    assert FrameDecoder().feed(stream) == [b"one", b"", b"\r\n3\r\n"]


def test_feed_one_byte_at_a_time_yields_the_same_frames():
    payloads = [b"x" * 12, b"", b"0123456789" * 3]
    decoder = FrameDecoder()
    stream = b"".join(encode_frame(p) for p in payloads)
    got = [frame for byte in stream for frame in decoder.feed(bytes([byte]))]
    assert got == payloads
    assert decoder.pending == 0


def test_partial_frame_is_kept_until_its_end_arrives():
    decoder = FrameDecoder()
    assert decoder.feed(b"5\r\nab") == []
    assert decoder.feed(b"cde\r") == []
    assert decoder.feed(b"\n2\r") == [b"abcde"]
    assert decoder.feed(b"\nzz\r\n") == [b"zz"]


def test_non_numeric_prefix_raises_frame_error():
    with pytest.raises(FrameError, match="not a decimal number"):
        FrameDecoder().feed(b"abc\r\n")


def test_non_numeric_prefix_is_rejected_before_its_crlf():
    with pytest.raises(FrameError, match="not a decimal number"):
        FrameDecoder().feed(b"1x")


def test_empty_prefix_raises_frame_error():
    with pytest.raises(FrameError, match="not a decimal number"):
        FrameDecoder().feed(b"\r\n")


def test_cr_without_lf_after_prefix_raises_frame_error():
    with pytest.raises(FrameError, match="not a decimal number"):
        FrameDecoder().feed(b"3\rabc")


def test_prefix_without_crlf_within_limit_raises_frame_error():
    decoder = FrameDecoder(max_frame=10**30)
    with pytest.raises(FrameError, match=f"no CRLF within {MAX_PREFIX} bytes"):
        decoder.feed(b"0" * MAX_PREFIX)


def test_oversize_length_is_rejected_before_the_payload_arrives():
    decoder = FrameDecoder(max_frame=16)
    with pytest.raises(FrameError) as caught:
        decoder.feed(b"17\r\n")
    assert str(caught.value) == "frame of 17 bytes exceeds the maximum of 16 bytes"


def test_oversize_length_is_rejected_before_its_crlf():
    with pytest.raises(FrameError, match="exceeds the maximum of 16777216 bytes"):
        FrameDecoder().feed(b"99999999")


def test_frame_of_exactly_max_frame_is_accepted():
    assert FrameDecoder(max_frame=4).feed(encode_frame(b"abcd")) == [b"abcd"]


def test_missing_crlf_after_payload_raises_frame_error():
    with pytest.raises(FrameError, match="not followed by CRLF"):
        FrameDecoder().feed(b"3\r\nabcXY")


def test_frame_error_is_a_protocol_error_and_keeps_earlier_frames():
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError) as caught:
        decoder.feed(encode_frame(b"good") + b"bad\r\n")
    assert isinstance(caught.value, FrameError)
    assert caught.value.frames == [b"good"]


def test_decoder_stays_broken_after_an_error():
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(b"x\r\n")
    with pytest.raises(FrameError, match="not a decimal number"):
        decoder.feed(encode_frame(b"fine"))
    assert decoder.pending == 0


def test_decoder_buffers_at_most_one_partial_frame():
    decoder = FrameDecoder(max_frame=100)
    decoder.feed(encode_frame(b"a" * 100) * 3 + b"100\r\n" + b"b" * 99)
    assert decoder.pending == 99


def test_negative_max_frame_is_refused():
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=-1)
