"""YAML configuration -> frozen, validated Settings with Warden's keys and defaults (facts §9).

Every problem is a ConfigError naming the key, e.g. `network.mtu: expected an integer, got 'x'`.
Unknown top-level sections are ignored, as Warden does.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

RLIMIT_NAMES = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "sigpending", "stack",
)
SUBSYSTEMS = ("rootfs", "network", "disk", "limits", "exec")


@dataclass(frozen=True)
class ServerSettings:
    unix_domain_path: str = "/tmp/warden.sock"
    unix_domain_permissions: int = 0o755
    # Ours: the group that owns the socket (with 0660, who besides root may talk to the server).
    unix_domain_group: str | None = None
    container_grace_time: int | None = 300
    container_rootfs_path: str = "build/rootfs"
    container_depot_path: str = "/var/lib/warden/containers"
    container_rlimits: dict[str, int] = field(default_factory=dict)
    job_output_limit: int = 10 * 1024 * 1024
    pidfile: str | None = None
    syslog_socket: str | None = None
    allow_nested_warden: bool = False
    # Ours: prefix of every kernel object name (cgroup parent, iptables chains), one per server.
    name_prefix: str = "warden"
    cgroup_root: str = "/sys/fs/cgroup"
    # None: the exec driver's own binary (the one its package ships).
    wshd_path: str | None = None
    max_frame_bytes: int = 16 * 1024 * 1024
    # Threads that run hooks (kernel work in Python). Few: more only contend for the GIL and
    # delay the event loop (ping p99 during 250 creates: 12-13 ms with 32, 9.3-9.5 ms with 8).
    request_threads: int = 8
    # Host path prefixes a create's bind_mounts may take their source from (after symlinks are
    # resolved); any other source is refused. An empty list refuses every bind mount.
    bind_mount_allowed_paths: tuple[str, ...] = ("/tmp", "/var/tmp")
    # Ours: processes (and threads) one container may hold at once; 0 or null: no limit.
    container_pids_limit: int | None = 1024
    # Ours: client connections served at once; more are closed at once, with a log line.
    max_connections: int = 1024


@dataclass(frozen=True)
class NetworkSettings:
    pool_network: str = "10.254.0.0/24"
    pool_start_address: str | None = None
    pool_size: int | None = None
    release_delay: float = 5
    mtu: int = 1500
    allow_networks: tuple[str, ...] = ()
    deny_networks: tuple[str, ...] = ()
    allow_host_access: bool = False
    dns_servers: tuple[str, ...] = ()

    def effective_pool(self) -> ipaddress.IPv4Network:
        """Legacy start+size win over pool_network (facts §8.2)."""
        if self.pool_start_address and self.pool_size:
            bits = 32 - (math.ceil(math.log2(self.pool_size)) + 2)
            return ipaddress.IPv4Network(f"{self.pool_start_address}/{bits}", strict=False)
        return ipaddress.IPv4Network(self.pool_network, strict=False)


@dataclass(frozen=True)
class PortSettings:
    pool_start_port: int | None = None
    pool_size: int | None = None


@dataclass(frozen=True)
class UserSettings:
    pool_start_uid: int = 10000
    pool_size: int = 64
    # Ours: each container gets its own user namespace, mapping its ids 0..namespace_size-1 to
    # a host range of its own: namespace_start_uid + (its pool uid - pool_start_uid) * size.
    namespaces: bool = True
    namespace_start_uid: int = 1_000_000_000
    namespace_size: int = 65536


@dataclass(frozen=True)
class QuotaSettings:
    disk_quota_enabled: bool = True


@dataclass(frozen=True)
class HealthCheckSettings:
    port: int | None = 2345


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "info"
    file: str | None = None


@dataclass(frozen=True)
class DriverSettings:
    rootfs: str = "overlayfs"
    network: str | None = "iptables"
    disk: str | None = None
    limits: str | None = "auto"  # cgroup_v2 on a unified host, else cgroup_v1 (drivers/auto.py)
    exec: str = "wshd"

    def selected(self) -> dict[str, str]:
        """Subsystem -> driver name, without the subsystems configured as none."""
        return {s: getattr(self, s) for s in SUBSYSTEMS if getattr(self, s)}


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    port: PortSettings = field(default_factory=PortSettings)
    user: UserSettings = field(default_factory=UserSettings)
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    health_check_server: HealthCheckSettings = field(default_factory=HealthCheckSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    drivers: DriverSettings = field(default_factory=DriverSettings)
    # Free-form options for plugins, keyed by plugin name; each plugin validates its own.
    plugins: dict[str, Any] = field(default_factory=dict)
    # The front ends that serve (frontends.py), each with its own options; it checks them.
    frontends: dict[str, dict[str, Any]] = field(default_factory=lambda: {"warden": {}})

    @property
    def depot(self) -> Path:
        return Path(self.server.container_depot_path)


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Settings)}
_LOG_LEVELS = ("debug2", "debug1", "debug", "info", "warn", "warning", "error", "fatal")


def load_settings(path: str | Path) -> Settings:
    """Read and validate a YAML config file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: invalid YAML: {exc}") from exc
    return settings_from_dict(data, base_dir=Path(path).resolve().parent)


def settings_from_dict(data: Any, base_dir: Path | None = None) -> Settings:
    """Build Settings from a parsed mapping; relative paths resolve against base_dir."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    sections: dict[str, Any] = {}
    for section, cls in _section_classes().items():
        raw = data.get(section)
        if raw is None:
            continue
        if section == "plugins":
            if not isinstance(raw, dict):
                raise ConfigError("plugins: expected a mapping")
            sections[section] = dict(raw)
            continue
        if section == "frontends":
            sections[section] = _frontends(raw)
            continue
        if section == "server" and isinstance(raw, dict) and "quota" in raw:
            # Warden keeps quota under server:; accept both places.
            raw = dict(raw)
            data = {**data, "quota": {**raw.pop("quota"), **(data.get("quota") or {})}}
        sections[section] = _build_section(section, cls, raw)
    if "quota" in data and "quota" not in sections and data["quota"] is not None:
        sections["quota"] = _build_section("quota", QuotaSettings, data["quota"])
    settings = Settings(**sections)
    settings = _resolve_paths(settings, base_dir)
    _validate(settings)
    return settings


def settings_to_yaml(settings: Settings) -> str:
    """`settings` as a YAML document that load_settings reads back to the same Settings
    (tuples as lists; the socket's mode in octal, as it is written by hand)."""
    data = dataclasses.asdict(settings)

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    text = yaml.safe_dump(plain(data), sort_keys=False, default_flow_style=False)
    mode = settings.server.unix_domain_permissions
    return text.replace(f"unix_domain_permissions: {mode}\n",
                        f"unix_domain_permissions: 0{mode:o}\n", 1)


def _section_classes() -> dict[str, type]:
    return {
        "server": ServerSettings, "network": NetworkSettings, "port": PortSettings,
        "user": UserSettings, "quota": QuotaSettings, "health_check_server": HealthCheckSettings,
        "logging": LoggingSettings, "drivers": DriverSettings, "plugins": dict, "frontends": dict,
    }


def _frontends(raw: Any) -> dict[str, dict[str, Any]]:
    """name -> options (null: no options). At least one front end must serve."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("frontends: expected a mapping of front end names to their options, "
                          "e.g. {warden: {}}")
    found = {}
    for name, options in raw.items():
        if options is None:
            options = {}
        if not isinstance(name, str) or not isinstance(options, dict):
            raise ConfigError(f"frontends.{name}: expected a mapping of options, got {options!r}")
        found[name] = dict(options)
    return found


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(known))})")
        values[key] = _coerce(f"{name}.{key}", known[key], value)
    return cls(**values)


def _coerce(key: str, fld: dataclasses.Field, value: Any) -> Any:
    kind = str(fld.type)
    optional = "None" in kind
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: must not be null")
    if kind.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value if v is not None):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(v for v in value if v is not None)
    if kind.startswith("dict"):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _resolve_paths(settings: Settings, base_dir: Path | None) -> Settings:
    if base_dir is None:
        return settings
    server = settings.server
    fixed = {}
    for key in ("container_rootfs_path", "container_depot_path", "wshd_path"):
        value = getattr(server, key)
        if value and not Path(value).is_absolute():
            fixed[key] = str((base_dir / value).resolve())
    return dataclasses.replace(settings, server=dataclasses.replace(server, **fixed))


def _validate(settings: Settings) -> None:
    s, n = settings.server, settings.network
    if not 0 <= s.unix_domain_permissions <= 0o777:
        raise ConfigError(f"server.unix_domain_permissions: {oct(s.unix_domain_permissions)} is not a file mode")
    if s.container_grace_time is not None and s.container_grace_time < 0:
        raise ConfigError("server.container_grace_time: must be >= 0 or null")
    if s.job_output_limit <= 0:
        raise ConfigError("server.job_output_limit: must be > 0")
    for name, value in s.container_rlimits.items():
        if name not in RLIMIT_NAMES:
            raise ConfigError(f"server.container_rlimits.{name}: unknown rlimit (known: {', '.join(RLIMIT_NAMES)})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"server.container_rlimits.{name}: expected a non-negative integer, got {value!r}")
    if not s.name_prefix or len(s.name_prefix) > 10 or not s.name_prefix.replace("-", "").isalnum():
        raise ConfigError(f"server.name_prefix: {s.name_prefix!r} must be 1-10 letters, digits or '-'")
    if s.container_pids_limit is not None and s.container_pids_limit < 0:
        raise ConfigError("server.container_pids_limit: must be >= 0 (0 or null: no limit)")
    if s.max_connections < 1:
        raise ConfigError("server.max_connections: must be >= 1")
    if s.max_frame_bytes < 1024:
        raise ConfigError("server.max_frame_bytes: must be >= 1024")
    try:
        n.effective_pool()
    except ValueError:
        raise ConfigError("network.pool_network: Invalid address/netmask (require: 1.2.3.4/5)") from None
    for key in ("allow_networks", "deny_networks"):
        for net in getattr(n, key):
            try:
                ipaddress.IPv4Network(net, strict=False)
            except ValueError:
                raise ConfigError(f"network.{key}: {net!r} is not an IPv4 network") from None
    for server in n.dns_servers:
        try:
            ipaddress.IPv4Address(server)
        except ValueError:
            raise ConfigError(f"network.dns_servers: {server!r} is not an IPv4 address") from None
    if not 68 <= n.mtu <= 65535:
        raise ConfigError(f"network.mtu: {n.mtu} is outside 68..65535")
    if n.release_delay < 0:
        raise ConfigError("network.release_delay: must be >= 0")
    if settings.user.pool_size <= 0 or settings.user.pool_start_uid <= 0:
        raise ConfigError("user: pool_start_uid and pool_size must be > 0")
    _validate_namespaces(settings.user)
    for prefix in s.bind_mount_allowed_paths:
        if not prefix.startswith("/"):
            raise ConfigError(f"server.bind_mount_allowed_paths: {prefix!r} is not an absolute path")
    if settings.logging.level not in _LOG_LEVELS:
        raise ConfigError(f"logging.level: {settings.logging.level!r} is not one of {', '.join(_LOG_LEVELS)}")
    port = settings.health_check_server.port
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"health_check_server.port: {port} is outside 0..65535")


# The largest id a user namespace can map: (uid_t)-1 is "no id".
_MAX_HOST_ID = 2**32 - 2


def _validate_namespaces(user: UserSettings) -> None:
    if not user.namespaces:
        return
    if user.namespace_size < 1024:
        raise ConfigError(f"user.namespace_size: {user.namespace_size} is below 1024")
    if user.pool_start_uid + user.pool_size > user.namespace_size:
        raise ConfigError(
            f"user.pool_start_uid + pool_size ({user.pool_start_uid + user.pool_size}) must fit "
            f"in user.namespace_size ({user.namespace_size}): vcap's uid is inside the container's range")
    if user.namespace_start_uid <= 0:
        raise ConfigError("user.namespace_start_uid: must be > 0 (host root is never mapped)")
    end = user.namespace_start_uid + user.pool_size * user.namespace_size - 1
    if end > _MAX_HOST_ID:
        raise ConfigError(f"user.namespace_start_uid: the ranges of {user.pool_size} containers "
                          f"end at {end}, past the largest uid {_MAX_HOST_ID}")
