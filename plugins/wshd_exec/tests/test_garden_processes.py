"""Garden processes through WshdDriver on the real kernel (hookspecs.spawn, resize_tty): argv,
env, dir and user, stdin kept open for the front end, and a TTY with its window size. Each
container is a real wshd on a copy of the default rootfs (conftest.new_container); its init is
killed after the test and checked gone, and the descriptors the driver hands over are closed
as a front end closes them."""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from collections.abc import Callable, Iterator

import pytest
from warden_wshd_exec import processes

from warden_framework.container import Container
from warden_framework.errors import WardenError
from warden_framework.idmap import IdMap
from warden_framework.jobs import Job

pytestmark = [pytest.mark.integration]

JOB_TIMEOUT = 20.0
OUTPUT_LIMIT = 1 << 20
ID_MAP_BASE = 2_110_000_000  # far above any uid the host or other tests use
PTS_MAJORS = range(136, 144)  # UNIX98_PTY_SLAVE_MAJOR and the 7 after it


def wait_for(condition: Callable[[], bool], what: str, timeout: float = JOB_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def finished(job: Job) -> int:
    wait_for(lambda: job.done, f"job {job.id} to finish")
    return job.exit_status  # type: ignore[return-value]


def output(job: Job) -> str:
    return job.stdout_path.read_text()


def screen(job: Job) -> str:
    """A TTY job's output as its program wrote it (the terminal turns \\n into \\r\\n)."""
    return output(job).replace("\r\n", "\n")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def jobs_running(box: Container) -> list[int]:
    return [pid for pid in processes.members(box.records["exec"]["pid"]) if alive(pid)]


def no_job_left(box: Container) -> None:
    """Every process but the init gone. A failed exec's child is not a job, but it may still
    be on its way out (its exit runs on after wshd was told of the failure)."""
    wait_for(lambda: jobs_running(box) == [], "every job process to exit", timeout=5)


def open_fds() -> set[str]:
    """This process's descriptors, each as number and target."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            found.add(f"{name} {os.readlink(f'/proc/self/fd/{name}')}")
        except OSError:
            pass  # the listing's own descriptor
    return found


def close_input(job: Job) -> None:
    """What the front end does with job.stdin_fd: close it for end-of-file."""
    if job.stdin_fd is not None:
        os.close(job.stdin_fd)
        job.stdin_fd = None


@pytest.fixture
def new_box(driver, settings, new_container) -> Callable[..., Container]:
    """An active container: setup_init and start_init, optionally with a user namespace and
    a change to its rootfs first."""

    def make(env: list[str] | None = None, id_map: IdMap | None = None,
             prepare: Callable[[Container], None] | None = None) -> Container:
        box = new_container()
        box.env = env or []
        box.id_map = id_map
        if prepare is not None:
            prepare(box)
        box.records["exec"] = driver.setup_init(container=box, settings=settings)
        driver.start_init(container=box, record=box.records["exec"])
        return box

    return make


@pytest.fixture
def box(new_box) -> Container:
    return new_box()


@pytest.fixture
def start(driver, settings) -> Iterator[Callable[..., Job]]:
    """start(container, argv, **Garden fields) -> Job, as orchestrator.spawn makes it: the
    container's env first, the job's after; job_output_limit set. The input descriptors left
    open by a test are closed after it, as the front end would."""
    counter = iter(range(1, 1000))
    started: list[Job] = []

    def spawn(box: Container, argv: list[str], *, env: tuple[str, ...] = (),
              cwd: str | None = None, user: str | None = None, stdin: bool = False,
              tty: tuple[int, int] | None = None, linger: float = 0.0) -> Job:
        job_id = next(counter)
        job = Job(id=job_id, dir=box.jobs_dir / str(job_id), argv=tuple(argv),
                  env=(*box.env, *env), cwd=cwd, user=user, stdin=stdin, tty=tty,
                  linger=linger, output_limit=OUTPUT_LIMIT)
        job.dir.mkdir()
        started.append(job)
        job.record = driver.spawn(container=box, job=job, settings=settings)
        box.jobs[job_id] = job
        return job

    yield spawn
    for job in started:
        close_input(job)


def add_user(box: Container, line: str, home: str, uid: int, gid: int) -> None:
    """A passwd line in the container's rootfs, with its home owned by the user."""
    with open(box.rootfs_dir / "etc" / "passwd", "a") as f:
        f.write(line + "\n")
    (box.rootfs_dir / home.lstrip("/")).mkdir(parents=True)
    os.chown(box.rootfs_dir / home.lstrip("/"), box.host_id(uid), box.host_id(gid))


# ------------------------------------------------------------------------ argv and PATH

def test_hook_spawn_runs_a_process_with_its_arguments(box, start) -> None:
    job = start(box, ["/bin/echo", "a", "b"])
    assert job.stdin_fd is None  # no stdin asked for: nothing for the front end
    assert finished(job) == 0
    assert output(job) == "a b\n"
    assert job.stderr_path.read_text() == ""
    assert job.status_path.read_text() == "exit 0\n"


def test_hook_spawn_finds_a_bare_name_through_the_processes_own_path(box, start) -> None:
    bin_dir = box.rootfs_dir / "opt" / "tools"
    bin_dir.mkdir(parents=True)
    (bin_dir / "greet").write_text("#!/bin/sh\necho hello from $0\n")
    (bin_dir / "greet").chmod(0o755)
    default = start(box, ["echo", "found"])
    own = start(box, ["greet"], env=("PATH=/opt/tools",))
    assert finished(default) == 0 and output(default) == "found\n"
    assert finished(own) == 0 and output(own) == "hello from /opt/tools/greet\n"
    with pytest.raises(WardenError, match=f"^spawn job in {box.handle}: exec greet: "
                                          "No such file or directory$"):
        start(box, ["greet"])  # not in the default PATH
    no_job_left(box)


def test_hook_spawn_reports_a_processes_exit_code(box, start) -> None:
    job = start(box, ["/bin/sh", "-c", "echo out; echo err >&2; exit 7"])
    assert finished(job) == 7
    assert (output(job), job.stderr_path.read_text()) == ("out\n", "err\n")


def test_hook_signal_job_sigterm_ends_a_garden_process(driver, box, start) -> None:
    job = start(box, ["sleep", "1000"])
    wait_for(lambda: jobs_running(box), "sleep to start")
    driver.signal_job(container=box, job=job, signo=signal.SIGTERM)
    assert finished(job) == 255
    assert job.status_path.read_text() == "signal 15\n"
    no_job_left(box)


# ------------------------------------------------------------------------- env and dir

def test_hook_spawn_gives_the_container_env_then_the_processes_env_over_defaults(
        new_box, start) -> None:
    box = new_box(env=["A=container", "B=container"])
    job = start(box, ["env"], env=("B=process", "C=process"))
    assert finished(job) == 0
    env = dict(line.split("=", 1) for line in output(job).splitlines())
    assert env == {"A": "container", "B": "process", "C": "process", "HOME": "/root",
                   "USER": "root",
                   "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    mine = start(box, ["/usr/bin/env"], env=("HOME=/tmp", "PATH=/bin", "USER=someone"))
    assert finished(mine) == 0
    assert {"HOME=/tmp", "PATH=/bin", "USER=someone"} <= set(output(mine).splitlines())
    with pytest.raises(WardenError, match=r"^invalid environment variable 'NOEQUALS'"):
        start(box, ["env"], env=("NOEQUALS",))


def test_hook_spawn_runs_in_the_dir_given_else_the_users_home(box, start) -> None:
    given, root_home, vcap_home = (start(box, ["pwd"], cwd="/tmp"), start(box, ["pwd"]),
                                   start(box, ["pwd"], user="vcap"))
    assert [finished(j) for j in (given, root_home, vcap_home)] == [0, 0, 0]
    assert [output(j) for j in (given, root_home, vcap_home)] == ["/tmp\n", "/root\n",
                                                                 "/home/vcap\n"]
    with pytest.raises(WardenError, match=f"^spawn job in {box.handle}: chdir /nowhere: "
                                          "No such file or directory$"):
        start(box, ["pwd"], cwd="/nowhere")
    with pytest.raises(WardenError, match="^working directory tmp is not an absolute path$"):
        start(box, ["pwd"], cwd="tmp")
    no_job_left(box)


# -------------------------------------------------------------------------------- users

WHO = ["/bin/sh", "-c", 'echo "$(id -u) $(id -g) $HOME ${USER-unset} $(pwd)"']


def test_hook_spawn_runs_as_root_vcap_or_numeric_ids(box, start) -> None:
    add_user(box, "web:x:1500:1600::/srv/web:/bin/sh", "/srv/web", 1500, 1600)
    jobs = {user: start(box, WHO, user=user)
            for user in (None, "root", "vcap", "1234:2345", "1500:77")}
    assert {user: (finished(job), output(job)) for user, job in jobs.items()} == {
        None: (0, "0 0 /root root /root\n"),
        "root": (0, "0 0 /root root /root\n"),
        "vcap": (0, f"{box.uid} {box.uid} /home/vcap vcap /home/vcap\n"),
        "1234:2345": (0, "1234 2345 / unset /\n"),  # no passwd line: no name, home /
        "1500:77": (0, "1500 77 /srv/web web /srv/web\n"),  # the uid's line names it
    }


def test_hook_spawn_finds_a_user_in_the_containers_passwd(box, start) -> None:
    add_user(box, "alice:x:1500:1600:Alice:/home/alice:/bin/sh", "/home/alice", 1500, 1600)
    job = start(box, WHO, user="alice")
    assert finished(job) == 0
    assert output(job) == "1500 1600 /home/alice alice /home/alice\n"


def test_hook_spawn_refuses_a_user_the_containers_passwd_lacks(box, start) -> None:
    before = open_fds()
    with pytest.raises(WardenError, match="^unable to find user bob$"):
        start(box, WHO, user="bob", stdin=True)
    with pytest.raises(WardenError, match="^unable to find user bob$"):
        start(box, WHO, user="bob", tty=(24, 80))
    with pytest.raises(WardenError, match="^user 1:4294967295: ids above 4294967294 "):
        start(box, WHO, user="1:4294967295")
    no_job_left(box)
    assert open_fds() == before


def test_hook_spawn_reads_passwd_inside_the_container_root_only(box, start, tmp_path) -> None:
    """Symlinks in the container resolve inside its root, as the container sees them; the
    host's file a symlink names is never read. A FIFO is refused without blocking."""
    host_file = tmp_path / "host-passwd"
    host_file.write_text("mallory:x:0:0::/:/bin/sh\n")
    etc = box.rootfs_dir / "etc"
    (etc / "passwd").rename(etc / "passwd.real")
    with open(etc / "passwd.real", "a") as f:
        f.write("alice:x:1500:1600::/:/bin/sh\n")
    (etc / "passwd").symlink_to("/etc/passwd.real")
    linked = start(box, WHO, user="alice")
    assert finished(linked) == 0 and output(linked) == "1500 1600 / alice /\n"
    (etc / "passwd").unlink()
    (etc / "passwd").symlink_to(host_file)
    with pytest.raises(WardenError, match="^unable to find user mallory$"):
        start(box, WHO, user="mallory")
    (etc / "passwd").unlink()
    os.mkfifo(etc / "passwd")
    began = time.monotonic()
    with pytest.raises(WardenError, match=f"^spawn job in {box.handle}: read /etc/passwd: "
                                          "not the regular file expected$"):
        start(box, WHO, user="alice")
    assert time.monotonic() - began < 5
    no_job_left(box)


def test_hook_spawn_users_in_a_user_namespace_are_container_ids(new_box, start) -> None:
    def prepare(box: Container) -> None:
        # The server shifts the rootfs into the range; here only the homes need it.
        os.chown(box.rootfs_dir / "root", ID_MAP_BASE, ID_MAP_BASE)
        add_user(box, "alice:x:1500:1600::/home/alice:/bin/sh", "/home/alice", 1500, 1600)

    box = new_box(id_map=IdMap(host_base=ID_MAP_BASE, size=65536), prepare=prepare)
    jobs = [start(box, WHO, user=user) for user in ("root", "vcap", "alice")]
    tty = start(box, ["/bin/sh", "-c", 'stat -c "%u %g" "$(tty)"'], user="alice", tty=(24, 80))
    assert [(finished(job), output(job)) for job in jobs] == [
        (0, "0 0 /root root /root\n"),
        (0, f"{box.uid} {box.uid} /home/vcap vcap /home/vcap\n"),
        (0, "1500 1600 /home/alice alice /home/alice\n")]
    assert finished(tty) == 0 and screen(tty) == "1500 1600\n"


# -------------------------------------------------------------------------------- stdin

def test_hook_spawn_with_stdin_gives_the_front_end_a_pipe_whose_close_ends_input(
        box, start) -> None:
    job = start(box, ["cat"], stdin=True)
    fd = job.stdin_fd
    assert fd is not None
    assert os.get_blocking(fd) is False and not os.get_inheritable(fd)
    assert stat.S_ISFIFO(os.fstat(fd).st_mode)
    os.write(fd, b"hello ")
    os.write(fd, b"world\n")
    wait_for(lambda: output(job) == "hello world\n", "cat to copy its input")
    assert not job.done
    close_input(job)
    assert finished(job) == 0
    assert output(job) == "hello world\n"


def test_hook_spawn_without_stdin_gives_an_empty_one(box, start) -> None:
    job = start(box, ["/bin/sh", "-c", "cat; readlink /proc/self/fd/0"])
    assert job.stdin_fd is None
    assert finished(job) == 0
    assert output(job) == "/dev/null\n"


# ---------------------------------------------------------------------------------- TTY

def test_hook_spawn_with_a_tty_makes_it_the_processes_terminal_of_the_size_given(
        box, start) -> None:
    job = start(box, ["/bin/sh", "-c", "tty; stty size; [ -t 1 ] && [ -t 2 ] && echo err >&2"],
                tty=(30, 100))
    assert finished(job) == 0
    lines = screen(job).splitlines()
    assert len(lines) == 3 and re.fullmatch(r"/dev/pts/\d+", lines[0]), lines
    assert lines[1:] == ["30 100", "err"]  # stderr is the terminal too
    assert job.stderr_path.read_text() == ""


def test_hook_spawn_tty_cannot_be_redirected_by_container_root(box, start) -> None:
    """An attack: the server opens the TTY's ptmx inside the container's root, so container
    root tries to swap dev/pts/ptmx (or dev/pts itself) for something of its own before the
    next TTY spawn. The kernel refuses each attempt, and the next TTY is still the
    container's own devpts."""
    attack = start(box, ["/bin/sh", "-c",
                         "rm -f /dev/pts/ptmx; echo rm=$?; mv /dev/pts /dev/gone; echo mv=$?; "
                         "umount -l /dev/pts; echo umount=$?; ln -s /tmp/x /dev/pts/ptmx; "
                         "echo ln=$?; test -c /dev/pts/ptmx && echo still-a-device"],
                   user="root")
    assert finished(attack) == 0
    said = output(attack).split()
    assert "still-a-device" in said
    assert all(word.split("=")[1] != "0" for word in said if "=" in word), said
    job = start(box, ["/bin/sh", "-c", "tty"], tty=(24, 80))
    assert finished(job) == 0 and re.fullmatch(r"/dev/pts/\d+", screen(job).strip())


def test_hook_spawn_with_a_tty_makes_it_the_controlling_terminal_in_the_foreground(
        box, start) -> None:
    """Not through a shell: bash and busybox sh open their terminal by name at start-up,
    which makes it the controlling terminal of a session leader without one anyway."""
    job = start(box, ["cat", "/proc/self/stat"], tty=(24, 80))
    assert finished(job) == 0
    # After the command's ")": state ppid pgrp session tty_nr tpgid
    fields = screen(job).rsplit(")", 1)[1].split()
    tty_nr, tpgid = int(fields[4]), int(fields[5])
    assert (tty_nr >> 8) & 0xFFF in PTS_MAJORS, tty_nr
    assert tpgid == job.record["pid"]  # its group is the terminal's foreground one


def test_hook_spawn_with_a_tty_gives_the_front_end_its_master_for_input(box, start) -> None:
    job = start(box, ["/bin/sh", "-c", 'read line; echo "got $line"'], tty=(24, 80))
    fd = job.stdin_fd
    assert fd is not None and os.get_blocking(fd) is False and not os.get_inheritable(fd)
    assert os.isatty(fd)
    os.write(fd, b"hello\n")
    assert finished(job) == 0
    assert screen(job) == "hello\ngot hello\n"  # the terminal echoes the input


def test_hook_spawn_with_a_tty_finishes_the_job_once_its_output_is_in_the_file(
        box, start) -> None:
    for linger in (0.0, 5.0):
        job = start(box, ["seq", "1", "3000"], tty=(24, 80), linger=linger)
        assert finished(job) == 0
        text = screen(job)  # read the moment the job is done
        assert text.splitlines() == [str(n) for n in range(1, 3001)], (linger, text[-40:])


def test_hook_resize_tty_changes_the_size_the_process_sees(driver, box, start) -> None:
    job = start(box, ["/bin/sh", "-c", "stty size; read line; stty size"], tty=(24, 80))
    wait_for(lambda: screen(job) == "24 80\n", "the first size")
    driver.resize_tty(container=box, job=job, rows=50, columns=132)
    os.write(job.stdin_fd, b"go\n")
    assert finished(job) == 0
    assert screen(job) == "24 80\ngo\n50 132\n"


def test_hook_resize_tty_sends_sigwinch_to_the_foreground_group(driver, box, start) -> None:
    script = "trap 'echo winch; stty size' WINCH; echo ready; while :; do sleep 0.05; done"
    job = start(box, ["/bin/sh", "-c", script], tty=(24, 80))
    wait_for(lambda: screen(job) == "ready\n", "the trap to be set")
    driver.resize_tty(container=box, job=job, rows=40, columns=120)
    wait_for(lambda: "winch\n40 120\n" in screen(job), "the trap to run")
    assert screen(job).count("winch") == 1
    driver.signal_job(container=box, job=job, signo=signal.SIGTERM)
    assert finished(job) == 255
    driver.resize_tty(container=box, job=job, rows=10, columns=10)  # ended: nothing to do


def test_hook_resize_tty_of_a_job_without_a_tty_does_nothing(driver, box, start) -> None:
    job = start(box, ["cat"], stdin=True)
    assert driver.resize_tty(container=box, job=job, rows=40, columns=120) is None
    close_input(job)
    assert finished(job) == 0


def test_hook_spawn_tty_relay_outlives_the_job_while_its_terminal_is_held(
        driver, box, start) -> None:
    """A process left behind on the terminal delays the job's end a little, not until it
    exits; the relay copies its output on and closes its master when the last user left.
    Nothing of the job stays open in the server then."""
    warm = start(box, ["true"])  # the reaper thread and its pipe, made once
    assert finished(warm) == 0
    before = open_fds()
    # The controlling process's exit hangs the terminal up for its group: the process left
    # behind ignores that, as one started with nohup does.
    job = start(box, ["/bin/sh", "-c", "trap '' HUP; (sleep 0.5; echo late) & echo bye"],
                tty=(24, 80))
    assert finished(job) == 0
    assert screen(job) == "bye\n"
    close_input(job)
    wait_for(lambda: screen(job) == "bye\nlate\n", "the left-behind process's output")
    wait_for(lambda: open_fds() == before, "the relay to close its master")


def test_hook_spawn_that_fails_leaves_no_process_and_no_descriptor(box, start) -> None:
    warm = start(box, ["true"])
    assert finished(warm) == 0
    before = open_fds()
    for fields in ({"tty": (24, 80)}, {"stdin": True}, {}):
        with pytest.raises(WardenError, match="exec nosuch: No such file or directory$"):
            start(box, ["nosuch"], **fields)
    no_job_left(box)
    wait_for(lambda: open_fds() == before, "every descriptor of the failed spawns to close")
