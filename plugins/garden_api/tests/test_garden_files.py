"""StreamIn and StreamOut (garden-api.md §4.10-4.11) on fake drivers: the tar runs on the host
(FakeExec), so the paths are the test's own directories."""

from __future__ import annotations

import io
import tarfile
import time

from garden_client import Reply, _read_body, _read_head

FILES = "/containers/:handle/files"
TREE = {"tree/a.txt": b"alpha\n", "tree/sub/b.bin": bytes(range(256)) * 300, "tree/empty": b""}


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o640
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read()
                for m in tar.getmembers() if m.isfile()}


def stream_in(client, handle: str, destination: str, body: bytes, user: str = "",
              chunk: int = 7000) -> Reply:
    """PUT with a chunked body, as the Go client sends an io.Reader."""
    path = client.path(FILES, handle=handle) + f"?destination={destination}&user={user}"
    head = (f"PUT {path} HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
            "Transfer-Encoding: chunked\r\nContent-Type: application/x-tar\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk])
                      for i in range(0, len(body), chunk))
    with client._connect() as sock:
        sock.sendall(head + chunks + b"0\r\n\r\n")
        status, headers, rest = _read_head(sock)
        return Reply(status, headers, _read_body(sock, headers, rest))


def stream_out(client, handle: str, source: str, user: str = "") -> Reply:
    return client.call("GET", client.path(FILES, handle=handle), query={"source": source, "user": user})


def test_stream_in_then_stream_out_round_trips_a_tree(garden, tmp_path):
    _, client, handle = garden
    destination = tmp_path / "made" / "here"  # made by StreamIn, as Guardian does
    reply = stream_in(client, handle, str(destination), tar_of(TREE))
    assert (reply.status, reply.body) == (200, b"{}\n")
    for name, data in TREE.items():
        assert (destination / name).read_bytes() == data
    reply = stream_out(client, handle, str(destination / "tree"))
    assert reply.status == 200 and reply.headers["transfer-encoding"] == "chunked"
    assert members(reply.body) == TREE


def test_stream_out_of_a_directory_with_a_slash_gives_its_contents(garden, tmp_path):
    _, client, handle = garden
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"x\n")
    reply = stream_out(client, handle, f"{tmp_path}/d/")
    assert members(reply.body) == {"x": b"x\n"}


def test_stream_out_of_a_missing_path_is_an_error_with_tars_message(garden, tmp_path):
    _, client, handle = garden
    reply = stream_out(client, handle, str(tmp_path / "missing"))
    assert reply.status == 500
    message = reply.json()["Message"]
    assert message.startswith(f"stream out of {tmp_path / 'missing'} failed (tar exit status")
    assert "missing" in message.split("):", 1)[1]  # tar's own words name the path


def test_stream_in_of_a_broken_archive_is_an_error_with_tars_message(garden, tmp_path):
    _, client, handle = garden
    reply = stream_in(client, handle, str(tmp_path), b"this is no tar archive" * 100)
    assert reply.status == 500
    assert reply.json()["Message"].startswith(f"stream in to {tmp_path} failed (tar exit status")


def test_stream_in_of_several_megabytes(garden, tmp_path):
    _, client, handle = garden
    big = {"big.bin": bytes(range(256)) * (20 << 12)}  # 20 MiB: more than the pipe buffer holds
    assert stream_in(client, handle, str(tmp_path), tar_of(big), chunk=1 << 16).status == 200
    assert (tmp_path / "big.bin").read_bytes() == big["big.bin"]


def test_file_streams_leave_no_process_behind(garden, tmp_path):
    """Their processes are forgotten once they ended (and never listed or attachable)."""
    srv, client, handle = garden
    stream_in(client, handle, str(tmp_path), tar_of({"f": b"f"}))
    stream_out(client, handle, str(tmp_path / "f"))
    container = srv.orchestrator.containers[handle]
    deadline = time.monotonic() + 10
    while container.jobs and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not container.jobs


def test_file_streams_of_an_unknown_container_are_a_404(garden):
    _, client, _ = garden
    reply = stream_out(client, "no-such", "/tmp")
    assert reply.status == 404 and reply.json()["Type"] == "ContainerNotFoundError"


def test_stream_in_needs_a_destination(garden):
    _, client, handle = garden
    reply = stream_in(client, handle, "", tar_of({"f": b""}))
    assert reply.status == 500 and reply.json()["Message"] == "stream in: destination is required"


def test_a_stream_in_under_way_is_not_listed_in_info(garden, tmp_path):
    """Garden lists no StreamIn/StreamOut process in ProcessIDs."""
    srv, client, handle = garden
    body = tar_of({"f": b"f" * 100_000})
    path = client.path(FILES, handle=handle) + f"?destination={tmp_path}&user="
    with client._connect() as sock:
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n"
                      ).encode() + b"%x\r\n%s\r\n" % (1000, body[:1000]))
        container = srv.orchestrator.containers[handle]
        deadline = time.monotonic() + 10
        while not container.jobs and time.monotonic() < deadline:  # the tar started
            time.sleep(0.01)
        info = client.call("GET", client.path("/containers/:handle/info", handle=handle))
        assert info.status == 200 and info.json()["ProcessIDs"] == []
        rest = body[1000:]
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        assert _read_head(sock)[0] == 200
    assert (tmp_path / "f").read_bytes() == b"f" * 100_000
