"""The envelope and message codec: type codes, exact bytes, required fields, enums, UTF-8."""

from __future__ import annotations

import pytest

from warden_framework.protocol import (
    ERROR_TYPE,
    MESSAGE_TYPES,
    REQUIRED_FIELDS,
    ProtocolError,
    decode_message,
    encode_frame,
    encode_message,
    error_response,
    frame_message,
    pb,
    request_class,
    response_class,
    response_class_for,
    type_code,
)

# warden-facts §1.2: type numbers of every request/response pair.
EXPECTED_CODES = {
    "Create": 11, "Stop": 12, "Destroy": 13, "Info": 14,
    "Spawn": 21, "Link": 22, "Run": 23, "Stream": 24,
    "NetIn": 31, "NetOut": 32, "CopyIn": 41, "CopyOut": 42,
    "LimitMemory": 51, "LimitDisk": 52, "LimitBandwidth": 53, "LimitCpu": 54,
    "Ping": 91, "List": 92, "Echo": 93,
}  # fmt: skip


def minimal(cls):
    """An instance of `cls` with its required fields (and those of sub-messages) set."""
    message = cls()
    for name in REQUIRED_FIELDS.get(cls.DESCRIPTOR.name, ()):
        field = cls.DESCRIPTOR.fields_by_name[name]
        setattr(message, name, b"\xc2\x82" if field.type == field.TYPE_BYTES else 1)
    return message


def test_type_table_matches_the_facts():
    codes = {req.__name__.removesuffix("Request"): code for code, (req, _) in MESSAGE_TYPES.items()}
    assert codes == EXPECTED_CODES
    assert ERROR_TYPE == 1
    for code, (request, response) in MESSAGE_TYPES.items():
        assert response.__name__ == request.__name__.replace("Request", "Response")
        assert pb.Message.Type.Name(code) == request.__name__[: -len("Request")]


@pytest.mark.parametrize("code", sorted(MESSAGE_TYPES))
def test_every_request_and_response_round_trips(code):
    request_cls, response_cls = MESSAGE_TYPES[code]
    request, response = minimal(request_cls), minimal(response_cls)
    assert decode_message(encode_message(request)) == request
    assert decode_message(encode_message(response), response=True) == response
    assert type(decode_message(encode_message(request))) is request_cls


def test_list_request_envelope_bytes_match_the_facts():
    assert encode_message(pb.ListRequest()) == bytes.fromhex("085c1200")


def test_ping_response_envelope_bytes_match_the_facts():
    assert encode_message(pb.PingResponse()) == bytes.fromhex("085b1200")


def test_create_request_envelope_bytes_match_the_facts():
    encoded = encode_message(pb.CreateRequest(handle=b"abc"))
    assert encoded == bytes.fromhex("080b12051a03616263")


def test_frame_message_frames_the_envelope():
    assert frame_message(pb.ListRequest()) == b"4\r\n\x08\x5c\x12\x00\r\n"


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 1 << 20, (1 << 21) + 5])
@pytest.mark.parametrize("fields", [{"name": "stdout"}, {"name": "stderr"}, {},
                                    {"name": "stdout", "exit_status": 0}])
def test_frame_message_of_output_is_byte_identical_to_protobufs(size, fields):
    message = pb.StreamResponse(data=b"\x00\xff" * (size // 2) + b"x" * (size % 2), **fields)
    assert frame_message(message) == encode_frame(encode_message(message))


def test_empty_repeated_fields_are_omitted():
    assert pb.ListResponse().SerializeToString() == b""
    assert encode_message(pb.ListResponse()) == bytes.fromhex("085c1200")
    assert pb.InfoResponse(state="active").SerializeToString() == b"\x52\x06active"


def test_repeated_scalars_are_unpacked():
    assert pb.InfoResponse(job_ids=[1, 2]).SerializeToString() == bytes.fromhex("e00201e00202")


def test_negative_icmp_type_is_a_ten_byte_varint_and_round_trips():
    request = pb.NetOutRequest(handle=b"h", icmp_type=-1)
    payload = request.SerializeToString()
    assert payload.endswith(bytes.fromhex("30ffffffffffffffffff01"))
    assert decode_message(encode_message(request)).icmp_type == -1


def test_netin_request_uses_the_swapped_field_numbers():
    payload = pb.NetInRequest(handle=b"h", host_port=1, container_port=2).SerializeToString()
    assert payload == bytes.fromhex("0a0168" + "1002" + "1801")  # handle, [2], [3]


def test_error_response_has_type_1_whatever_the_request():
    encoded = encode_message(error_response("unknown handle"))
    envelope = pb.Message.FromString(encoded)
    assert envelope.type == 1
    decoded = decode_message(encoded, response=True)
    assert isinstance(decoded, pb.ErrorResponse)
    assert decoded.message == b"unknown handle"


def test_error_response_keeps_the_bytes_behind_surrogate_escapes():
    assert error_response("bad \udcff path").message == b"bad \xff path"
    assert error_response(b"\xff").message == b"\xff"


def test_response_type_equals_request_type():
    assert type_code(pb.CreateResponse) == type_code(pb.CreateRequest()) == 11
    assert response_class_for(pb.CreateRequest()) is pb.CreateResponse
    assert response_class_for(pb.StreamRequest) is pb.StreamResponse
    assert request_class(24) is pb.StreamRequest
    with pytest.raises(ProtocolError, match="CreateResponse is not a Warden request"):
        response_class_for(pb.CreateResponse)
    assert response_class(1) is pb.ErrorResponse


def test_unknown_request_type_is_a_protocol_error():
    data = pb.Message(type=99, payload=b"").SerializeToString()
    with pytest.raises(ProtocolError) as caught:
        decode_message(data)
    assert str(caught.value) == "Unknown request type: 99"
    with pytest.raises(ProtocolError, match="Unknown request type: 1$"):
        decode_message(encode_message(error_response("x")))
    with pytest.raises(ProtocolError, match="Unknown response type: 99"):
        decode_message(data, response=True)


def test_undecodable_envelope_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="undecodable envelope"):
        decode_message(b"\xff\xff\xff")


def test_undecodable_payload_is_a_protocol_error():
    data = pb.Message(type=91, payload=b"\x0a\x05ab").SerializeToString()
    with pytest.raises(ProtocolError, match="undecodable PingRequest"):
        decode_message(data)


def test_envelope_without_payload_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="field payload is required"):
        decode_message(bytes.fromhex("085c"))


def test_request_missing_a_required_field_is_a_protocol_error():
    data = encode_message(pb.SpawnRequest(handle=b"h"), validate=False)
    with pytest.raises(ProtocolError) as caught:
        decode_message(data)
    assert str(caught.value) == "SpawnRequest: field script is required but missing"


def test_nested_required_field_is_named_with_its_path():
    request = pb.CreateRequest(bind_mounts=[pb.BindMount(src_path=b"/a", dst_path=b"/b")])
    with pytest.raises(ProtocolError, match=r"field bind_mounts\[0\]\.mode is required"):
        encode_message(request)


@pytest.mark.parametrize(
    "response",
    [
        pb.CreateResponse(),
        pb.SpawnResponse(),
        pb.EchoResponse(),
        pb.NetInResponse(host_port=1),
        pb.LimitBandwidthResponse(rate=1),
    ],
    ids=lambda message: type(message).__name__,
)
def test_server_cannot_send_a_response_without_its_required_fields(response):
    with pytest.raises(ProtocolError, match="is required but missing"):
        encode_message(response)


def test_out_of_range_enum_is_refused_on_encode_but_kept_on_decode():
    request = pb.NetOutRequest(handle=b"h", protocol=10)
    with pytest.raises(ProtocolError, match="field protocol has invalid value 10"):
        encode_message(request)
    assert decode_message(encode_message(request, validate=False)).protocol == 10


def test_out_of_range_bind_mount_mode_reaches_the_server():
    mount = pb.BindMount(src_path=b"/a", dst_path=b"/b", mode=7)
    data = encode_message(pb.CreateRequest(bind_mounts=[mount]), validate=False)
    assert decode_message(data).bind_mounts[0].mode == 7


def test_string_field_with_invalid_utf8_is_a_protocol_error():
    payload = pb.NetOutRequest(handle=b"h").SerializeToString() + b"\x12\x02\xff\xfe"
    data = pb.Message(type=32, payload=payload).SerializeToString()
    with pytest.raises(ProtocolError, match="field network is not valid UTF-8"):
        decode_message(data)


def test_handles_and_output_are_bytes_and_round_trip_exactly():
    response = pb.LinkResponse(exit_status=0, stdout=b"\x00\xff\xfe", stderr=b"\x80")
    assert decode_message(encode_message(response), response=True) == response
    request = pb.InfoRequest(handle=b"\xc2\x82")
    assert decode_message(encode_message(request)).handle == b"\xc2\x82"


def test_unknown_fields_are_skipped():
    payload = pb.InfoRequest(handle=b"h").SerializeToString() + b"\x10\x01"
    decoded = decode_message(pb.Message(type=14, payload=payload).SerializeToString())
    assert [field.name for field, _ in decoded.ListFields()] == ["handle"]


def test_stop_booleans_default_to_false():
    request = decode_message(encode_message(pb.StopRequest(handle=b"h")))
    assert request.background is False and request.kill is False
    assert not request.HasField("kill")


def test_non_warden_message_cannot_be_encoded():
    with pytest.raises(ProtocolError, match="BindMount is not a Warden request"):
        encode_message(pb.BindMount())
