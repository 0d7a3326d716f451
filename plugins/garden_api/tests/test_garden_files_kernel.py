"""StreamIn and StreamOut on the real kernel: the tar runs inside the container as the user
the request names, so ownership and permissions are the container's."""

from __future__ import annotations

import pytest
from test_garden_files import TREE, members, stream_in, stream_out, tar_of
from test_garden_processes_kernel import garden, server, stdout_of  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


def test_stream_in_and_out_as_vcap_round_trips_a_tree_owned_by_vcap(garden):  # noqa: F811
    client, handle = garden
    reply = stream_in(client, handle, "/tmp/drop/here", tar_of(TREE), user="vcap")
    assert (reply.status, reply.body) == (200, b"{}\n")
    owners, status = stdout_of(client, handle, {"path": "sh", "args": [
        "-c", "id -u; stat -c %u /tmp/drop /tmp/drop/here/tree/sub/b.bin"], "user": "vcap"})
    vcap, *owned = owners.split()
    assert status == 0 and int(vcap) > 0 and owned == [vcap, vcap]
    reply = stream_out(client, handle, "/tmp/drop/here/tree", user="vcap")
    assert reply.status == 200 and members(reply.body) == TREE


def test_stream_in_as_root_by_default_and_out_of_a_directory_with_a_slash(garden):  # noqa: F811
    client, handle = garden
    assert stream_in(client, handle, "/root/in", tar_of({"secret": b"s\n"})).status == 200
    reply = stream_out(client, handle, "/root/in/")
    assert reply.status == 200 and members(reply.body) == {"secret": b"s\n"}


def test_stream_out_as_vcap_of_roots_files_is_refused_with_tars_message(garden):  # noqa: F811
    client, handle = garden
    assert stream_in(client, handle, "/root/in", tar_of({"secret": b"s\n"})).status == 200
    reply = stream_out(client, handle, "/root/in", user="vcap")
    assert reply.status == 500
    assert reply.json()["Message"].startswith("stream out of /root/in failed (tar exit status")


def test_stream_in_as_vcap_where_vcap_may_not_write_is_refused(garden):  # noqa: F811
    client, handle = garden
    reply = stream_in(client, handle, "/root/nope", tar_of({"f": b"f"}), user="vcap")
    assert reply.status == 500
    assert reply.json()["Message"].startswith("stream in to /root/nope failed (tar exit status")
