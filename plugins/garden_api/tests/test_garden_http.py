"""The HTTP layer as the Go client meets it: framing, errors, routing."""

from __future__ import annotations


def test_ping_answers_an_empty_json_object(fake_garden):
    _, garden, _ = fake_garden
    reply = garden.call("GET", "/ping")
    assert reply.status == 200 and reply.body == b"{}\n"
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["content-length"] == "3"


def test_an_unknown_route_is_a_404_error_object(fake_garden):
    _, garden, _ = fake_garden
    reply = garden.call("GET", "/nope")
    assert reply.status == 404
    assert reply.json() == {"Type": "", "Message": "no route for GET /nope", "Handle": "",
                            "ProcessID": ""}
