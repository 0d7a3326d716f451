"""The hook specifications: the one contract every driver and plugin implements.

Sections follow the order the server calls them. Subsystem hooks have exactly one owner (the
configured driver of that subsystem) and are `firstresult`; gathering hooks (`pre_create`,
`setup_host`, `info`, `snapshot`, `recover`, `event_sources`) may have many implementations.
A record is a JSON-able dict (the keys other subsystems read are typed in records.py) that
the orchestrator writes to snapshot.json once the container
is active; a server killed during create runs every teardown with the record None at its next
start, so a teardown finds what its setup made from the container's id alone.
Every docstring answers four questions: Called, May assume, Returns, On failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .config import Settings
    from .container import Container
    from .jobs import Job
    from .records import DiskRecord, ExecRecord, FsRecord, JobRecord, LimitsRecord, NetRecord

hookspec = pluggy.HookspecMarker("warden")

# Which subsystem owns each single-owner hook. plugins.py checks there is exactly one owner.
OWNERS = {
    "setup_fs": "rootfs", "teardown_fs": "rootfs", "copy_in": "rootfs", "copy_out": "rootfs",
    "setup_init": "exec", "start_init": "exec", "teardown_init": "exec", "spawn": "exec",
    "signal_job": "exec", "stop": "exec", "resize_tty": "exec",
    "apply_limits": "limits", "release_limits": "limits", "limit_memory": "limits",
    "limit_cpu": "limits", "limit_pids": "limits",
    "setup_net": "network", "teardown_net": "network", "net_in": "network", "net_out": "network",
    "limit_bandwidth": "network",
    "setup_disk": "disk", "teardown_disk": "disk", "limit_disk": "disk",
}


# ---------------------------------------------------------------------------------------------
# Server start. Called once, after every driver is loaded and before the socket opens.
# ---------------------------------------------------------------------------------------------

@hookspec
def setup_host(settings: Settings) -> None:
    """Prepare host-wide state the driver needs (chains, parent cgroups, depot layout).

    Called: once at server start, before recovery and before the socket is served.
    May assume: check_host passed; the server may have been killed before (state left over).
    Returns: None. MUST be idempotent: running it again never duplicates anything.
    On failure: raise DriverError naming the object; the server refuses to start.
    """


@hookspec
def teardown_host(settings: Settings) -> None:
    """Remove the host-wide state setup_host made (parent cgroups, chains with the prefix).

    Called: only when no container of this server is left: by the test kit after a test's
    server stopped, and by an operator uninstalling.
    May assume: every container was destroyed.
    Returns: None. Idempotent.
    On failure: raise DriverError naming the object that cannot be removed.
    """


# ---------------------------------------------------------------------------------------------
# Create. pre_create, then the steps in orchestrator.CREATE_STAGES order: setup_disk, then
# setup_fs and apply_limits side by side (on two threads), setup_init, setup_net, start_init.
# If a step raises, the steps running beside it end first; then the teardown of every step
# that started runs in reverse and the client gets the first error.
# ---------------------------------------------------------------------------------------------

@hookspec
def pre_create(container: Container, request: Any, settings: Settings) -> None:
    """Validate a create request before anything is made.

    Called: on create, after pools reserved the network and uid, before setup_fs.
    May assume: container.handle, id, path, network, uid are set; nothing exists in the kernel.
    Returns: None.
    On failure: raise WardenError with the client's text. MUST have no side effects, so a
    refusal leaves nothing to undo.
    """


@hookspec(firstresult=True)
def setup_fs(container: Container, settings: Settings) -> FsRecord:
    """Make the container's root filesystem at container.rootfs_dir, with its /etc files.

    Called: after setup_disk (first step when no disk driver is configured), while
    apply_limits runs on another thread.
    May assume: container.path exists; the rootfs request field (if any) is
    container.rootfs_request; container.records.get("disk") may name a volume
    ({"subvolume": path}) that the writable layer should live in.
    Returns: a record naming what was made (lower dir, upper dir, bind mounts).
    On failure: raise WardenError (`rootfs <path> not found`, ...). Partial work may remain;
    teardown_fs removes it.
    """


@hookspec(firstresult=True)
def teardown_fs(container: Container, record: FsRecord | None) -> None:
    """Unmount and remove what setup_fs made.

    Called: after destroy answered, in its background cleanup (finish_destroy); on rollback;
    by recovery for a dead container (record may be None).
    May assume: nothing; the mount may be gone already.
    Returns: None. Calling it twice is harmless.
    On failure: raise DriverError naming the mount or path that cannot be removed.
    """


@hookspec(firstresult=True)
def setup_init(container: Container, settings: Settings) -> ExecRecord:
    """Start the container's init (wshd) in new namespaces; it may build its root meanwhile.

    Called: after apply_limits.
    May assume: container.rootfs_dir is the mounted root; container.binds lists bind mounts;
    container.records["limits"] (if there is a limits driver) is apply_limits' record.
    MUST: have the init born in the cgroups whose `tasks` files that record lists under "tasks"
    (a single-threaded process writing "0" to each before it clones the init).
    Returns: a record with at least {"pid": host pid of the container's init}, whose network
    namespace the network step attaches while the init builds its root; the init serves no
    request before start_init returned (no client knows the container before create ends).
    On failure: raise WardenError; teardown_init kills whatever was started.
    """


@hookspec(firstresult=True)
def start_init(container: Container, record: ExecRecord) -> None:
    """Wait until the init serves requests (it reports a failure to build its root here).

    Called: last step of create, after every other setup step succeeded.
    May assume: the init was born in its cgroups and its network namespace has the container's
    veth end.
    Returns: None.
    On failure: raise WardenError; the orchestrator rolls back every step.
    """


@hookspec(firstresult=True)
def teardown_init(container: Container, record: ExecRecord | None) -> None:
    """Kill the container's init and every process in it.

    Called: on destroy, before it answers (the only teardown the client waits for); on
    rollback; by recovery (record may be None: find by container.path).
    May assume: nothing; the init may be dead already.
    Returns: None once no process of the container is left. Idempotent.
    On failure: raise DriverError naming the process that survives.
    """


@hookspec(firstresult=True)
def apply_limits(container: Container, settings: Settings) -> LimitsRecord:
    """Create the container's cgroups and restrict devices, before the init exists.

    Called: after setup_disk, on another thread while setup_fs runs; before setup_init.
    May assume: nothing of the container's exists in the cgroup hierarchies yet; nothing of
    its root filesystem (setup_fs may not have begun).
    Returns: a record naming the cgroups, with "tasks": the `tasks` file of each of them;
    setup_init has the init born inside (joining by itself is ~0.1 ms per hierarchy, where
    moving a process in by pid waits ~10 ms on RCU in the kernel).
    On failure: raise DriverError; release_limits removes partial groups.
    """


@hookspec(firstresult=True)
def release_limits(container: Container, record: LimitsRecord | None) -> None:
    """Remove the container's cgroups (after its processes are gone).

    Called: after destroy answered, in its background cleanup (finish_destroy); on rollback
    and recovery cleanup; always after teardown_init.
    May assume: nothing; groups may be missing.
    Returns: None. Idempotent.
    On failure: raise DriverError naming the group that cannot be removed.
    """


@hookspec(firstresult=True)
def setup_disk(container: Container, settings: Settings) -> DiskRecord:
    """Give the container its disk quota bookkeeping (reset the uid's quota, make a subvolume).

    Called: first step of create, only when a disk driver is configured.
    May assume: container.path exists; container.uid is reserved for it. The root
    filesystem does not exist yet, so a driver may give it a volume to live in.
    Returns: a record of what was made.
    On failure: raise DriverError; teardown_disk undoes partial work.
    """


@hookspec(firstresult=True)
def teardown_disk(container: Container, record: DiskRecord | None) -> None:
    """Undo setup_disk.

    Called: after destroy answered, in its background cleanup (finish_destroy); on rollback
    and recovery cleanup.
    May assume: nothing.
    Returns: None. Idempotent.
    On failure: raise DriverError naming the object.
    """


@hookspec(firstresult=True)
def setup_net(container: Container, settings: Settings) -> NetRecord:
    """Connect the container to the host: veth pair, addresses, filter and NAT chains.

    Called: after apply_limits, before start_init.
    May assume: the init holds the network namespace (container.records["exec"]["pid"]);
    container.network is the /30 reserved for it; no object named after its id exists.
    MUST: drop traffic from the container whose source is not the container's address
    (anti-spoofing: DESIGN.md, Containment).
    Returns: a record naming everything made.
    On failure: raise DriverError. Partial work may stay behind: teardown_net removes it.
    Never touch objects not named after this container's id.
    """


@hookspec(firstresult=True)
def teardown_net(container: Container, record: NetRecord | None) -> None:
    """Remove what setup_net made for this container.

    Called: after destroy answered, in its background cleanup (finish_destroy); on rollback;
    by recovery for a dead container (record may be None); after teardown_init, so the init
    that held the network namespace is normally dead. In a destroy's cleanup it runs on a
    thread of its own, beside release_limits, teardown_fs and teardown_disk.
    May assume: nothing. The veth, the chains, or both may be missing.
    Returns: None. Calling it twice is harmless.
    On failure: raise only if an object exists and cannot be removed; name it.
    """


# ---------------------------------------------------------------------------------------------
# Requests on a live container.
# ---------------------------------------------------------------------------------------------

@hookspec(firstresult=True)
def spawn(container: Container, job: Job, settings: Settings) -> JobRecord:
    """Start a job: bash reading job.script on stdin, output into job.dir's files.

    Called: on spawn and run (Warden), and Garden's run, with the container active and job.dir
    created.
    May assume: job.id, job.privileged, job.rlimits (merged with container_rlimits) are set.
    A Warden job (job.argv None) is bash reading job.script on stdin, as root when privileged,
    else the container's user. A Garden process (job.argv set) is that program with job.env
    (KEY=VALUE, the container's first), in job.cwd (None: the user's home), as job.user
    ("root", "vcap", a name in the container's /etc/passwd or "uid:gid"; None: root); its
    stdin is empty unless job.stdin, and with job.tty (rows, columns) stdin, stdout and
    stderr are one pseudo-terminal whose output lands in job.stdout_path. With job.stdin or
    job.tty the driver sets job.stdin_fd to a descriptor the server writes the job's input
    to and closes for its end (the TTY's master, or a pipe), non-blocking.
    Returns: a record (e.g. the job's pid) kept in snapshot.json, on disk before a Spawn's reply
    (a Run's, whose id no client learns, with the next deferred write). When the job ends, the
    driver MUST call job.finish(exit_status) from any thread (255 for a signal death). If
    job.linger > 0 the driver may wait up to that many seconds for the end and finish the job
    before returning (a Run answers a job that ended by then from the same thread:
    server/short_run.py). The snapshot learns of the end, and of the job being forgotten
    after a link, only later (persistence.py), so the driver MUST also record the exit status
    in job.status_path, in a format of its own: its `recover` finds it there. The job's files
    may already exist, empty (made ahead, jobs.make_job_dir).
    On failure: raise WardenError; no process of the job may remain.
    """


@hookspec(firstresult=True)
def signal_job(container: Container, job: Job, signo: int) -> None:
    """Send a signal to a job's process group (output limit, kill).

    Called: when a job exceeds job_output_limit.
    May assume: the job was spawned; it may have exited meanwhile.
    Returns: None.
    On failure: raise DriverError; a job that is already gone is not a failure.
    """


@hookspec(firstresult=True)
def resize_tty(container: Container, job: Job, rows: int, columns: int) -> None:
    """Set the window size of a job's TTY (its processes get SIGWINCH).

    Called: when a Garden client sends a window size for a process spawned with job.tty.
    May assume: the job was spawned with a TTY; it may have ended meanwhile.
    Returns: None.
    On failure: raise DriverError; a job that is already gone is not a failure.
    """


@hookspec(firstresult=True)
def stop(container: Container, kill: bool, timeout: float) -> None:
    """Stop every process of the container except its init.

    Called: on stop, on destroy and after an OOM.
    May assume: the init may be alive or dead.
    Returns: None when no job process is left: TERM, then KILL after `timeout` seconds
    (at once when kill is true).
    On failure: raise DriverError naming what survives.
    """


@hookspec(firstresult=True)
def net_in(container: Container, host_port: int, container_port: int) -> dict:
    """Forward host_port on the host's addresses to container_port in the container.

    Called: on net_in with the container active; ports already chosen by the server.
    May assume: setup_net succeeded. Returns: a record of the rule, kept for recovery.
    On failure: raise WardenError; no rule may remain.
    """


@hookspec(firstresult=True)
def net_out(container: Container, rule: dict) -> dict:
    """Allow the container's traffic to a network / port / protocol.

    Called: on net_out with the container active; `rule` holds the request's fields.
    May assume: setup_net succeeded. Returns: the validated rule, kept for recovery.
    On failure: raise WardenError with Warden's validation texts; no rule half-written.
    """


@hookspec(firstresult=True)
def limit_bandwidth(container: Container, rate: int | None, burst: int | None) -> tuple:
    """Shape the container's traffic to rate bytes/s with a burst of bytes, or read it.

    Called: on limit_bandwidth (active or stopped). Returns: (rate, burst) read back.
    May assume: setup_net succeeded.
    On failure: raise WardenError; the previous shaping stays.
    """


@hookspec(firstresult=True)
def limit_memory(container: Container, limit: int | None) -> int:
    """Set (when limit is not None) and read back memory.limit_in_bytes.

    Called: on limit_memory (active or stopped) and by recovery to re-apply.
    May assume: apply_limits succeeded. Returns: the value the kernel kept.
    On failure: raise WardenError (`Failed setting memory limit: ...`); kernel state unchanged.
    """


@hookspec(firstresult=True)
def limit_cpu(container: Container, shares: int | None) -> int:
    """Set (when shares is not None) and read back cpu.shares.

    Called: on limit_cpu (active or stopped) and by recovery. Returns: what the kernel kept.
    May assume: apply_limits succeeded.
    On failure: raise WardenError (`Failed setting cpu shares: ...`).
    """


@hookspec(firstresult=True)
def limit_pids(container: Container, limit: int | None) -> int:
    """Set (when limit is not None; 0 means none) and read back how many processes and
    threads the container may hold at once (Garden's pid_limits.max).

    Called: on a Garden create with pid limits, and by nothing else; without a call the
    container has server.container_pids_limit (apply_limits), which recover re-applies
    unless container.pids_limit says otherwise.
    May assume: apply_limits succeeded.
    Returns: the limit the kernel kept (0: none).
    On failure: raise WardenError (`Failed setting pids limit: ...`).
    """


@hookspec(firstresult=True)
def limit_disk(container: Container, limits: dict) -> dict:
    """Set and read back the container's disk quota.

    Called: on limit_disk with a disk driver configured; `limits` holds the request's set fields.
    May assume: setup_disk succeeded.
    Returns: the twelve LimitDiskResponse fields read back.
    On failure: raise WardenError; the old quota stays.
    """


@hookspec(firstresult=True)
def copy_in(container: Container, src_path: str, dst_path: str) -> None:
    """Copy host src_path into the container at dst_path, owned by the container's user.

    Called: on copy_in with the container active. May assume: setup_fs succeeded.
    Returns: None.
    On failure: raise WardenError naming the path. Paths never escape the container root.
    """


@hookspec(firstresult=True)
def copy_out(container: Container, src_path: str, dst_path: str, owner: str | None) -> None:
    """Copy the container's src_path to host dst_path, chowned to owner when given.

    Called: on copy_out (active or stopped). May assume: setup_fs succeeded.
    Returns: None.
    On failure: raise WardenError naming the path. Paths never escape the container root.
    """


# ---------------------------------------------------------------------------------------------
# Gathering hooks: any plugin may answer; results are merged.
# ---------------------------------------------------------------------------------------------

@hookspec
def info(container: Container, full: bool) -> dict:
    """Contribute InfoResponse fields (memory_stat, cpu_stat, disk_stat, bandwidth_stat, ips).

    Called: on info (full True), and on link/run/stream completion and before destroy (the
    obituary) with full False: those answers come with every command a client runs, so an
    implementation may leave out what costs more than reading kernel counters (a walk of the
    container's files). An implementation may omit the argument (pluggy passes what it names).
    May assume: the container is active or stopped.
    Returns: a dict of InfoResponse field names to values (stats as dicts), or None.
    On failure: raise WardenError with the `Failed getting ...` text; the whole info fails.
    """


@hookspec
def event_sources(container: Container) -> list:
    """Name file descriptors the server should watch for container events (OOM).

    Called: after create, after recovery and after limit_memory.
    May assume: the container's setup is complete.
    Returns: a list of objects with fileno(), read_event() -> str | None and close(); the
    server watches them on its event loop and adds each returned event to the container.
    On failure: raise DriverError; the request that caused the call fails.
    """


@hookspec
def snapshot(container: Container) -> dict:
    """Contribute plugin state to snapshot.json beyond the step records.

    Called: whenever the server writes the container's snapshot.
    May assume: nothing about the kernel. Returns: {plugin name: JSON-able state} or None.
    On failure: raise; the snapshot write fails and is retried on the next change.
    """


@hookspec
def recover(container: Container, settings: Settings) -> None:
    """Re-attach to a container that survived a server restart, restoring what is missing.

    Called: at start-up for each container whose snapshot is readable, before it is listed.
    May assume: container.records holds every step's record; pools already hold its resources.
    A job the snapshot lists as running may have ended (even been linked) before the restart:
    the exec driver MUST then call job.finish with the status kept in job.dir.
    Returns: None.
    On failure: raise WardenError; the server then destroys the container completely.
    """


# ---------------------------------------------------------------------------------------------
# Observers (metrics, audit): any plugin may implement them; a failure is logged and the server
# goes on. They must be cheap: request_finished runs on the event loop after every request.
# ---------------------------------------------------------------------------------------------

@hookspec
def server_started(runtime: Any) -> None:
    """Learn the serving server (a server.runtime.Runtime), to read its state later
    (containers, pools, cleanups).

    Called: once, after recovery, when every front end listens.
    May assume: runtime.orchestrator.containers holds every live container. Read only: an
    observer never changes a container or calls the orchestrator.
    Returns: None.
    On failure: logged; the server serves on.
    """


@hookspec
def request_finished(frontend: str, request: str, seconds: float, error: str | None) -> None:
    """A front end answered a request.

    Called: on the event loop after each answer, with the front end's name, the request's
    type name (e.g. "CreateRequest"), its duration and the error text answered, if any.
    May assume: nothing of the container. Returns: None. On failure: logged.
    """


@hookspec
def container_event(container: Container, event: str) -> None:
    """An event was recorded on a container ("out of memory", "command exceeded maximum
    output"), as Info lists them.

    Called: when the event is added, from a worker thread or the loop.
    May assume: the container is active or stopped. Returns: None. On failure: logged.
    """


@hookspec
def health_routes() -> dict:
    """Pages the health-check port serves besides its bare 200 (facts §3.5).

    Called: once, when the health-check server starts (health_check_server.port set).
    May assume: server_started was called. A handler runs in a thread: it only reads.
    Returns: {path: handler}; handler() -> (content type, body bytes), run in a thread per
    request. Two plugins naming one path: the first registered wins.
    On failure: a handler that raises answers 500.
    """
