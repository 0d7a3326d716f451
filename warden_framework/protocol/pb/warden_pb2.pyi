from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("type", "payload")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        Error: _ClassVar[Message.Type]
        Create: _ClassVar[Message.Type]
        Stop: _ClassVar[Message.Type]
        Destroy: _ClassVar[Message.Type]
        Info: _ClassVar[Message.Type]
        Spawn: _ClassVar[Message.Type]
        Link: _ClassVar[Message.Type]
        Run: _ClassVar[Message.Type]
        Stream: _ClassVar[Message.Type]
        NetIn: _ClassVar[Message.Type]
        NetOut: _ClassVar[Message.Type]
        CopyIn: _ClassVar[Message.Type]
        CopyOut: _ClassVar[Message.Type]
        LimitMemory: _ClassVar[Message.Type]
        LimitDisk: _ClassVar[Message.Type]
        LimitBandwidth: _ClassVar[Message.Type]
        LimitCpu: _ClassVar[Message.Type]
        Ping: _ClassVar[Message.Type]
        List: _ClassVar[Message.Type]
        Echo: _ClassVar[Message.Type]
    Error: Message.Type
    Create: Message.Type
    Stop: Message.Type
    Destroy: Message.Type
    Info: Message.Type
    Spawn: Message.Type
    Link: Message.Type
    Run: Message.Type
    Stream: Message.Type
    NetIn: Message.Type
    NetOut: Message.Type
    CopyIn: Message.Type
    CopyOut: Message.Type
    LimitMemory: Message.Type
    LimitDisk: Message.Type
    LimitBandwidth: Message.Type
    LimitCpu: Message.Type
    Ping: Message.Type
    List: Message.Type
    Echo: Message.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    type: int
    payload: bytes
    def __init__(self, type: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ErrorResponse(_message.Message):
    __slots__ = ("message", "data", "backtrace")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    BACKTRACE_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    data: bytes
    backtrace: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, message: _Optional[bytes] = ..., data: _Optional[bytes] = ..., backtrace: _Optional[_Iterable[bytes]] = ...) -> None: ...

class BindMount(_message.Message):
    __slots__ = ("src_path", "dst_path", "mode")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RO: _ClassVar[BindMount.Mode]
        RW: _ClassVar[BindMount.Mode]
    RO: BindMount.Mode
    RW: BindMount.Mode
    SRC_PATH_FIELD_NUMBER: _ClassVar[int]
    DST_PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    src_path: bytes
    dst_path: bytes
    mode: int
    def __init__(self, src_path: _Optional[bytes] = ..., dst_path: _Optional[bytes] = ..., mode: _Optional[int] = ...) -> None: ...

class ResourceLimits(_message.Message):
    __slots__ = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "sigpending", "stack")
    AS_FIELD_NUMBER: _ClassVar[int]
    CORE_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FSIZE_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    MEMLOCK_FIELD_NUMBER: _ClassVar[int]
    MSGQUEUE_FIELD_NUMBER: _ClassVar[int]
    NICE_FIELD_NUMBER: _ClassVar[int]
    NOFILE_FIELD_NUMBER: _ClassVar[int]
    NPROC_FIELD_NUMBER: _ClassVar[int]
    RSS_FIELD_NUMBER: _ClassVar[int]
    RTPRIO_FIELD_NUMBER: _ClassVar[int]
    SIGPENDING_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    core: int
    cpu: int
    data: int
    fsize: int
    locks: int
    memlock: int
    msgqueue: int
    nice: int
    nofile: int
    nproc: int
    rss: int
    rtprio: int
    sigpending: int
    stack: int
    def __init__(self, core: _Optional[int] = ..., cpu: _Optional[int] = ..., data: _Optional[int] = ..., fsize: _Optional[int] = ..., locks: _Optional[int] = ..., memlock: _Optional[int] = ..., msgqueue: _Optional[int] = ..., nice: _Optional[int] = ..., nofile: _Optional[int] = ..., nproc: _Optional[int] = ..., rss: _Optional[int] = ..., rtprio: _Optional[int] = ..., sigpending: _Optional[int] = ..., stack: _Optional[int] = ..., **kwargs) -> None: ...

class MemoryStat(_message.Message):
    __slots__ = ("cache", "rss", "mapped_file", "pgpgin", "pgpgout", "swap", "pgfault", "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable", "hierarchical_memory_limit", "hierarchical_memsw_limit", "total_cache", "total_rss", "total_mapped_file", "total_pgpgin", "total_pgpgout", "total_swap", "total_pgfault", "total_pgmajfault", "total_inactive_anon", "total_active_anon", "total_inactive_file", "total_active_file", "total_unevictable")
    CACHE_FIELD_NUMBER: _ClassVar[int]
    RSS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_FILE_FIELD_NUMBER: _ClassVar[int]
    PGPGIN_FIELD_NUMBER: _ClassVar[int]
    PGPGOUT_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    PGFAULT_FIELD_NUMBER: _ClassVar[int]
    PGMAJFAULT_FIELD_NUMBER: _ClassVar[int]
    INACTIVE_ANON_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ANON_FIELD_NUMBER: _ClassVar[int]
    INACTIVE_FILE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FILE_FIELD_NUMBER: _ClassVar[int]
    UNEVICTABLE_FIELD_NUMBER: _ClassVar[int]
    HIERARCHICAL_MEMORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    HIERARCHICAL_MEMSW_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CACHE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_RSS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MAPPED_FILE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PGPGIN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PGPGOUT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SWAP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PGFAULT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PGMAJFAULT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INACTIVE_ANON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ACTIVE_ANON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INACTIVE_FILE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ACTIVE_FILE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_UNEVICTABLE_FIELD_NUMBER: _ClassVar[int]
    cache: int
    rss: int
    mapped_file: int
    pgpgin: int
    pgpgout: int
    swap: int
    pgfault: int
    pgmajfault: int
    inactive_anon: int
    active_anon: int
    inactive_file: int
    active_file: int
    unevictable: int
    hierarchical_memory_limit: int
    hierarchical_memsw_limit: int
    total_cache: int
    total_rss: int
    total_mapped_file: int
    total_pgpgin: int
    total_pgpgout: int
    total_swap: int
    total_pgfault: int
    total_pgmajfault: int
    total_inactive_anon: int
    total_active_anon: int
    total_inactive_file: int
    total_active_file: int
    total_unevictable: int
    def __init__(self, cache: _Optional[int] = ..., rss: _Optional[int] = ..., mapped_file: _Optional[int] = ..., pgpgin: _Optional[int] = ..., pgpgout: _Optional[int] = ..., swap: _Optional[int] = ..., pgfault: _Optional[int] = ..., pgmajfault: _Optional[int] = ..., inactive_anon: _Optional[int] = ..., active_anon: _Optional[int] = ..., inactive_file: _Optional[int] = ..., active_file: _Optional[int] = ..., unevictable: _Optional[int] = ..., hierarchical_memory_limit: _Optional[int] = ..., hierarchical_memsw_limit: _Optional[int] = ..., total_cache: _Optional[int] = ..., total_rss: _Optional[int] = ..., total_mapped_file: _Optional[int] = ..., total_pgpgin: _Optional[int] = ..., total_pgpgout: _Optional[int] = ..., total_swap: _Optional[int] = ..., total_pgfault: _Optional[int] = ..., total_pgmajfault: _Optional[int] = ..., total_inactive_anon: _Optional[int] = ..., total_active_anon: _Optional[int] = ..., total_inactive_file: _Optional[int] = ..., total_active_file: _Optional[int] = ..., total_unevictable: _Optional[int] = ...) -> None: ...

class CpuStat(_message.Message):
    __slots__ = ("usage", "user", "system")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    usage: int
    user: int
    system: int
    def __init__(self, usage: _Optional[int] = ..., user: _Optional[int] = ..., system: _Optional[int] = ...) -> None: ...

class DiskStat(_message.Message):
    __slots__ = ("bytes_used", "inodes_used")
    BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    INODES_USED_FIELD_NUMBER: _ClassVar[int]
    bytes_used: int
    inodes_used: int
    def __init__(self, bytes_used: _Optional[int] = ..., inodes_used: _Optional[int] = ...) -> None: ...

class BandwidthStat(_message.Message):
    __slots__ = ("in_rate", "in_burst", "out_rate", "out_burst")
    IN_RATE_FIELD_NUMBER: _ClassVar[int]
    IN_BURST_FIELD_NUMBER: _ClassVar[int]
    OUT_RATE_FIELD_NUMBER: _ClassVar[int]
    OUT_BURST_FIELD_NUMBER: _ClassVar[int]
    in_rate: int
    in_burst: int
    out_rate: int
    out_burst: int
    def __init__(self, in_rate: _Optional[int] = ..., in_burst: _Optional[int] = ..., out_rate: _Optional[int] = ..., out_burst: _Optional[int] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EchoRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    def __init__(self, message: _Optional[bytes] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    def __init__(self, message: _Optional[bytes] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("handles",)
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, handles: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("bind_mounts", "grace_time", "handle", "network", "rootfs")
    BIND_MOUNTS_FIELD_NUMBER: _ClassVar[int]
    GRACE_TIME_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ROOTFS_FIELD_NUMBER: _ClassVar[int]
    bind_mounts: _containers.RepeatedCompositeFieldContainer[BindMount]
    grace_time: int
    handle: bytes
    network: str
    rootfs: bytes
    def __init__(self, bind_mounts: _Optional[_Iterable[_Union[BindMount, _Mapping]]] = ..., grace_time: _Optional[int] = ..., handle: _Optional[bytes] = ..., network: _Optional[str] = ..., rootfs: _Optional[bytes] = ...) -> None: ...

class CreateResponse(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    def __init__(self, handle: _Optional[bytes] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("handle", "background", "kill")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    background: bool
    kill: bool
    def __init__(self, handle: _Optional[bytes] = ..., background: bool = ..., kill: bool = ...) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DestroyRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    def __init__(self, handle: _Optional[bytes] = ...) -> None: ...

class DestroyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    def __init__(self, handle: _Optional[bytes] = ...) -> None: ...

class PidStat(_message.Message):
    __slots__ = ("current", "limit")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    current: int
    limit: int
    def __init__(self, current: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("state", "events", "host_ip", "container_ip", "container_path", "memory_stat", "cpu_stat", "disk_stat", "bandwidth_stat", "job_ids", "pid_stat")
    STATE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_IP_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PATH_FIELD_NUMBER: _ClassVar[int]
    MEMORY_STAT_FIELD_NUMBER: _ClassVar[int]
    CPU_STAT_FIELD_NUMBER: _ClassVar[int]
    DISK_STAT_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_STAT_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    PID_STAT_FIELD_NUMBER: _ClassVar[int]
    state: str
    events: _containers.RepeatedScalarFieldContainer[str]
    host_ip: str
    container_ip: str
    container_path: bytes
    memory_stat: MemoryStat
    cpu_stat: CpuStat
    disk_stat: DiskStat
    bandwidth_stat: BandwidthStat
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    pid_stat: PidStat
    def __init__(self, state: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ..., host_ip: _Optional[str] = ..., container_ip: _Optional[str] = ..., container_path: _Optional[bytes] = ..., memory_stat: _Optional[_Union[MemoryStat, _Mapping]] = ..., cpu_stat: _Optional[_Union[CpuStat, _Mapping]] = ..., disk_stat: _Optional[_Union[DiskStat, _Mapping]] = ..., bandwidth_stat: _Optional[_Union[BandwidthStat, _Mapping]] = ..., job_ids: _Optional[_Iterable[int]] = ..., pid_stat: _Optional[_Union[PidStat, _Mapping]] = ...) -> None: ...

class SpawnRequest(_message.Message):
    __slots__ = ("handle", "script", "privileged", "rlimits", "discard_output", "log_tag")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    RLIMITS_FIELD_NUMBER: _ClassVar[int]
    DISCARD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LOG_TAG_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    script: bytes
    privileged: bool
    rlimits: ResourceLimits
    discard_output: bool
    log_tag: str
    def __init__(self, handle: _Optional[bytes] = ..., script: _Optional[bytes] = ..., privileged: bool = ..., rlimits: _Optional[_Union[ResourceLimits, _Mapping]] = ..., discard_output: bool = ..., log_tag: _Optional[str] = ...) -> None: ...

class SpawnResponse(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class LinkRequest(_message.Message):
    __slots__ = ("handle", "job_id")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    job_id: int
    def __init__(self, handle: _Optional[bytes] = ..., job_id: _Optional[int] = ...) -> None: ...

class LinkResponse(_message.Message):
    __slots__ = ("exit_status", "stdout", "stderr", "info")
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    exit_status: int
    stdout: bytes
    stderr: bytes
    info: InfoResponse
    def __init__(self, exit_status: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., info: _Optional[_Union[InfoResponse, _Mapping]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("handle", "script", "privileged", "rlimits", "discard_output", "log_tag")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    RLIMITS_FIELD_NUMBER: _ClassVar[int]
    DISCARD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LOG_TAG_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    script: bytes
    privileged: bool
    rlimits: ResourceLimits
    discard_output: bool
    log_tag: str
    def __init__(self, handle: _Optional[bytes] = ..., script: _Optional[bytes] = ..., privileged: bool = ..., rlimits: _Optional[_Union[ResourceLimits, _Mapping]] = ..., discard_output: bool = ..., log_tag: _Optional[str] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("exit_status", "stdout", "stderr", "info")
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    exit_status: int
    stdout: bytes
    stderr: bytes
    info: InfoResponse
    def __init__(self, exit_status: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., info: _Optional[_Union[InfoResponse, _Mapping]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("handle", "job_id")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    job_id: int
    def __init__(self, handle: _Optional[bytes] = ..., job_id: _Optional[int] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("name", "data", "exit_status", "info")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    exit_status: int
    info: InfoResponse
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ..., exit_status: _Optional[int] = ..., info: _Optional[_Union[InfoResponse, _Mapping]] = ...) -> None: ...

class NetInRequest(_message.Message):
    __slots__ = ("handle", "host_port", "container_port")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    host_port: int
    container_port: int
    def __init__(self, handle: _Optional[bytes] = ..., host_port: _Optional[int] = ..., container_port: _Optional[int] = ...) -> None: ...

class NetInResponse(_message.Message):
    __slots__ = ("host_port", "container_port")
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    host_port: int
    container_port: int
    def __init__(self, host_port: _Optional[int] = ..., container_port: _Optional[int] = ...) -> None: ...

class NetOutRequest(_message.Message):
    __slots__ = ("handle", "network", "port", "port_range", "protocol", "icmp_type", "icmp_code", "log")
    class Protocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TCP: _ClassVar[NetOutRequest.Protocol]
        UDP: _ClassVar[NetOutRequest.Protocol]
        ICMP: _ClassVar[NetOutRequest.Protocol]
        ALL: _ClassVar[NetOutRequest.Protocol]
    TCP: NetOutRequest.Protocol
    UDP: NetOutRequest.Protocol
    ICMP: NetOutRequest.Protocol
    ALL: NetOutRequest.Protocol
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PORT_RANGE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ICMP_TYPE_FIELD_NUMBER: _ClassVar[int]
    ICMP_CODE_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    network: str
    port: int
    port_range: str
    protocol: int
    icmp_type: int
    icmp_code: int
    log: bool
    def __init__(self, handle: _Optional[bytes] = ..., network: _Optional[str] = ..., port: _Optional[int] = ..., port_range: _Optional[str] = ..., protocol: _Optional[int] = ..., icmp_type: _Optional[int] = ..., icmp_code: _Optional[int] = ..., log: bool = ...) -> None: ...

class NetOutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CopyInRequest(_message.Message):
    __slots__ = ("handle", "src_path", "dst_path")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SRC_PATH_FIELD_NUMBER: _ClassVar[int]
    DST_PATH_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    src_path: bytes
    dst_path: bytes
    def __init__(self, handle: _Optional[bytes] = ..., src_path: _Optional[bytes] = ..., dst_path: _Optional[bytes] = ...) -> None: ...

class CopyInResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CopyOutRequest(_message.Message):
    __slots__ = ("handle", "src_path", "dst_path", "owner")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SRC_PATH_FIELD_NUMBER: _ClassVar[int]
    DST_PATH_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    src_path: bytes
    dst_path: bytes
    owner: str
    def __init__(self, handle: _Optional[bytes] = ..., src_path: _Optional[bytes] = ..., dst_path: _Optional[bytes] = ..., owner: _Optional[str] = ...) -> None: ...

class CopyOutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LimitMemoryRequest(_message.Message):
    __slots__ = ("handle", "limit_in_bytes")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_IN_BYTES_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    limit_in_bytes: int
    def __init__(self, handle: _Optional[bytes] = ..., limit_in_bytes: _Optional[int] = ...) -> None: ...

class LimitMemoryResponse(_message.Message):
    __slots__ = ("limit_in_bytes",)
    LIMIT_IN_BYTES_FIELD_NUMBER: _ClassVar[int]
    limit_in_bytes: int
    def __init__(self, limit_in_bytes: _Optional[int] = ...) -> None: ...

class LimitDiskRequest(_message.Message):
    __slots__ = ("handle", "block_limit", "block", "block_soft", "block_hard", "inode_limit", "inode", "inode_soft", "inode_hard", "byte_limit", "byte", "byte_soft", "byte_hard")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_LIMIT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SOFT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HARD_FIELD_NUMBER: _ClassVar[int]
    INODE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    INODE_SOFT_FIELD_NUMBER: _ClassVar[int]
    INODE_HARD_FIELD_NUMBER: _ClassVar[int]
    BYTE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    BYTE_FIELD_NUMBER: _ClassVar[int]
    BYTE_SOFT_FIELD_NUMBER: _ClassVar[int]
    BYTE_HARD_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    block_limit: int
    block: int
    block_soft: int
    block_hard: int
    inode_limit: int
    inode: int
    inode_soft: int
    inode_hard: int
    byte_limit: int
    byte: int
    byte_soft: int
    byte_hard: int
    def __init__(self, handle: _Optional[bytes] = ..., block_limit: _Optional[int] = ..., block: _Optional[int] = ..., block_soft: _Optional[int] = ..., block_hard: _Optional[int] = ..., inode_limit: _Optional[int] = ..., inode: _Optional[int] = ..., inode_soft: _Optional[int] = ..., inode_hard: _Optional[int] = ..., byte_limit: _Optional[int] = ..., byte: _Optional[int] = ..., byte_soft: _Optional[int] = ..., byte_hard: _Optional[int] = ...) -> None: ...

class LimitDiskResponse(_message.Message):
    __slots__ = ("block_limit", "block", "block_soft", "block_hard", "inode_limit", "inode", "inode_soft", "inode_hard", "byte_limit", "byte", "byte_soft", "byte_hard")
    BLOCK_LIMIT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SOFT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HARD_FIELD_NUMBER: _ClassVar[int]
    INODE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    INODE_SOFT_FIELD_NUMBER: _ClassVar[int]
    INODE_HARD_FIELD_NUMBER: _ClassVar[int]
    BYTE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    BYTE_FIELD_NUMBER: _ClassVar[int]
    BYTE_SOFT_FIELD_NUMBER: _ClassVar[int]
    BYTE_HARD_FIELD_NUMBER: _ClassVar[int]
    block_limit: int
    block: int
    block_soft: int
    block_hard: int
    inode_limit: int
    inode: int
    inode_soft: int
    inode_hard: int
    byte_limit: int
    byte: int
    byte_soft: int
    byte_hard: int
    def __init__(self, block_limit: _Optional[int] = ..., block: _Optional[int] = ..., block_soft: _Optional[int] = ..., block_hard: _Optional[int] = ..., inode_limit: _Optional[int] = ..., inode: _Optional[int] = ..., inode_soft: _Optional[int] = ..., inode_hard: _Optional[int] = ..., byte_limit: _Optional[int] = ..., byte: _Optional[int] = ..., byte_soft: _Optional[int] = ..., byte_hard: _Optional[int] = ...) -> None: ...

class LimitBandwidthRequest(_message.Message):
    __slots__ = ("handle", "rate", "burst")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    rate: int
    burst: int
    def __init__(self, handle: _Optional[bytes] = ..., rate: _Optional[int] = ..., burst: _Optional[int] = ...) -> None: ...

class LimitBandwidthResponse(_message.Message):
    __slots__ = ("rate", "burst")
    RATE_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    rate: int
    burst: int
    def __init__(self, rate: _Optional[int] = ..., burst: _Optional[int] = ...) -> None: ...

class LimitCpuRequest(_message.Message):
    __slots__ = ("handle", "limit_in_shares")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_IN_SHARES_FIELD_NUMBER: _ClassVar[int]
    handle: bytes
    limit_in_shares: int
    def __init__(self, handle: _Optional[bytes] = ..., limit_in_shares: _Optional[int] = ...) -> None: ...

class LimitCpuResponse(_message.Message):
    __slots__ = ("limit_in_shares",)
    LIMIT_IN_SHARES_FIELD_NUMBER: _ClassVar[int]
    limit_in_shares: int
    def __init__(self, limit_in_shares: _Optional[int] = ...) -> None: ...
