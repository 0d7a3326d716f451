"""Real containers over the Warden protocol: namespaces, root, users, jobs, files, limits, and
nothing left behind (the autouse leak checker fails any test that leaks)."""

import os
import socket
import stat
import time

import pytest

from warden_framework.client import Client, ServerError
from warden_framework.jobs import READ_CHUNK
from warden_framework.protocol import pb


def run(client, handle, script, **kw):
    return client.run(handle=handle, script=script.encode(), **kw)


def test_container_sees_wshd_as_pid1_and_no_host_processes(client):
    h = client.create().handle
    resp = run(client, h, "cat /proc/1/comm; ls /proc | grep -c '^[0-9]'")
    comm, count = resp.stdout.decode().split()
    assert resp.exit_status == 0 and comm == "wshd"
    assert int(count) < 10  # wshd, bash, ls, grep: not the host's hundreds


def test_hostname_and_root_are_its_own(client):
    h = client.create().handle
    info = client.info(handle=h)
    container_id = os.path.basename(info.container_path.decode())
    resp = run(client, h, "hostname; ls /")
    out = resp.stdout.decode().split()
    assert out[0] == container_id
    assert "bin" in out and "work" not in out and "depot" not in out


def test_files_are_private_to_each_container(client, warden):
    a, b = client.create().handle, client.create().handle
    assert run(client, a, "echo secret > /tmp/f").exit_status == 0
    assert run(client, b, "cat /tmp/f").exit_status != 0
    lower = warden.settings.server.container_rootfs_path
    assert not os.path.exists(os.path.join(lower, "tmp", "f"))


def test_job_runs_as_container_uid_unless_privileged(client, warden):
    h = client.create().handle
    uid = run(client, h, "id -u").stdout.decode().strip()
    assert int(uid) >= warden.settings.user.pool_start_uid
    assert run(client, h, "id -u", privileged=True).stdout == b"0\n"
    assert run(client, h, "echo $USER $HOME").stdout == b"vcap /home/vcap\n"


def test_jobs_after_the_first_get_the_spare_directory_made_ahead(client):
    h = client.create().handle
    jobs = os.path.join(client.info(handle=h).container_path.decode(), "jobs")
    assert run(client, h, "echo one").stdout == b"one\n"
    deadline = time.monotonic() + 5
    while not os.path.isdir(os.path.join(jobs, ".spare")) and time.monotonic() < deadline:
        time.sleep(0.01)
    spare = os.stat(os.path.join(jobs, ".spare")).st_ino
    job = client.spawn(handle=h, script=b"echo two; echo err >&2; sleep 100").job_id
    assert os.stat(os.path.join(jobs, str(job))).st_ino == spare
    client.stop(handle=h, kill=True)
    resp = client.link(handle=h, job_id=job)
    assert (resp.stdout, resp.stderr) == (b"two\n", b"err\n")


def test_exit_status_and_signal_death(client):
    h = client.create().handle
    assert run(client, h, "exit 7").exit_status == 7
    assert run(client, h, "kill -9 $$").exit_status == 255


def test_rlimits_reach_the_job(client):
    h = client.create().handle
    assert run(client, h, "ulimit -n", rlimits={"nofile": 1234}).stdout == b"1234\n"
    assert run(client, h, "ulimit -n").stdout == b"1024\n"  # no leak into later jobs


def test_link_from_second_connection(client, warden):
    h = client.create().handle
    job = client.spawn(handle=h, script=b"sleep 0.3; echo late").job_id
    with Client(warden.settings.server.unix_domain_path) as other:
        resp = other.link(handle=h, job_id=job)
    assert (resp.exit_status, resp.stdout) == (0, b"late\n")


def test_stream_replays_from_start_after_disconnect(client, warden):
    h = client.create().handle
    job = client.spawn(handle=h, script=b"echo 1; sleep 0.5; echo 2").job_id
    with Client(warden.settings.server.unix_domain_path) as first:
        first_chunk = next(iter(first.stream(handle=h, job_id=job)))
        assert first_chunk.data.startswith(b"1")
    with Client(warden.settings.server.unix_domain_path) as second:
        frames = list(second.stream(handle=h, job_id=job))
    assert b"".join(f.data for f in frames if f.name == "stdout") == b"1\n2\n"
    assert frames[-1].exit_status == 0


def test_output_limit_kills_chatty_job(client):
    h = client.create().handle
    resp = run(client, h, "while true; do echo BLABLABLABLABLABLA; done")
    assert resp.exit_status == 255
    assert len(resp.stdout) <= 100 * 1024 + READ_CHUNK  # one read chunk past it (facts §12.2)
    assert "command exceeded maximum output" in list(resp.info.events)


def test_copy_in_and_out_round_trip_with_modes_and_owner(client, tmp_path):
    h = client.create().handle
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool").write_text("#!/bin/sh\necho ok\n")
    os.chmod(src / "tool", 0o755)
    client.copy_in(handle=h, src_path=str(src) + "/", dst_path="/home/vcap/in")
    assert run(client, h, "/home/vcap/in/tool; stat -c %U /home/vcap/in/tool").stdout == b"ok\nvcap\n"
    out = tmp_path / "out"
    client.copy_out(handle=h, src_path="/home/vcap/in/", dst_path=str(out), owner="nobody:nogroup")
    st = os.stat(out / "tool")
    assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 65534


def test_memory_and_cpu_limits_read_back(client):
    h = client.create().handle
    assert client.limit_memory(handle=h).limit_in_bytes == 9223372036854771712
    assert client.limit_memory(handle=h, limit_in_bytes=100 << 20).limit_in_bytes == 100 << 20
    assert client.limit_cpu(handle=h, limit_in_shares=1).limit_in_shares == 2


def test_info_reports_stats(client):
    h = client.create().handle
    answer = run(client, h, "dd if=/dev/zero of=/tmp/f bs=1k count=64 2>/dev/null")
    info = client.info(handle=h)
    assert info.state == "active" and info.cpu_stat.usage > 0
    assert info.disk_stat.bytes_used >= 64 * 1024
    # A Run's answer carries the cheap part only: no walk of the container's files for it.
    assert answer.info.state == "active" and answer.info.cpu_stat.usage > 0
    assert not answer.info.HasField("disk_stat")


def test_stop_kills_jobs_and_keeps_files(client):
    h = client.create().handle
    job = client.spawn(handle=h, script=b"echo x > /tmp/kept; sleep 100").job_id
    time.sleep(0.2)  # let the job start writing
    client.stop(handle=h, kill=True)
    assert client.link(handle=h, job_id=job).exit_status == 255
    assert client.info(handle=h).state == "stopped"


def test_missing_rootfs_and_bind_source_errors(client, tmp_path):
    with pytest.raises(ServerError, match=f"^rootfs {tmp_path}/nope not found$"):
        client.create(rootfs=str(tmp_path / "nope"))
    with pytest.raises(ServerError, match="^Source path for bind mount does not exist: /nonexistent$"):
        client.create(bind_mounts=[{"src_path": "/nonexistent", "dst_path": "/x", "mode": "ro"}])
    assert list(client.list().handles) == []


def test_bind_mounts_ro_and_rw(client, warden, tmp_path):
    """A rw bind is written with the container's own host ids (its user namespace's range):
    the directory must let them write, as any host directory must let its writer."""
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir(), rw.mkdir()
    rw.chmod(0o777)
    (ro / "f").write_text("data")
    h = client.create(bind_mounts=[{"src_path": str(ro), "dst_path": "/mnt/ro", "mode": "ro"},
                                   {"src_path": str(rw), "dst_path": "/mnt/rw", "mode": "rw"}]).handle
    resp = run(client, h, "cat /mnt/ro/f; touch /mnt/ro/g", privileged=True)
    assert resp.stdout == b"data" and resp.exit_status == 1
    assert b"Read-only file system" in resp.stderr
    assert run(client, h, "touch /mnt/rw/g", privileged=True).exit_status == 0
    assert (rw / "g").stat().st_uid in range(warden.settings.user.namespace_start_uid, 2**32)
    assert str(ro) not in open("/proc/self/mounts").read()


def test_destroy_leaves_nothing(client, warden):
    h = client.create().handle
    path = client.info(handle=h).container_path.decode()
    client.spawn(handle=h, script=b"sleep 100")
    client.destroy(handle=h)
    with pytest.raises(ServerError, match="^unknown handle$"):
        client.info(handle=h)
    warden.call(warden.server.wait_cleanups)  # the rest of the destroy runs after the answer
    assert not os.path.exists(path)


def test_pending_link_answered_with_obituary_on_destroy(client, warden):
    import threading
    h = client.create().handle
    job = client.spawn(handle=h, script=b"sleep 100").job_id
    result = {}

    def link():
        with Client(warden.settings.server.unix_domain_path) as other:
            result["resp"] = other.link(handle=h, job_id=job)

    waiter = threading.Thread(target=link)
    waiter.start()
    time.sleep(0.2)  # let the link reach the server before the destroy
    client.destroy(handle=h)
    waiter.join(30)
    resp = result["resp"]
    assert resp.exit_status == 255
    assert resp.info.state in ("active", "stopped")  # the info taken just before destroy
