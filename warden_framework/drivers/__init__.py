"""Driver base classes, one per subsystem, and `load_drivers`: stevedore lives here only.

Each subsystem's entry-point namespace is `warden.drivers.<subsystem>`; the config names one
entry point per subsystem. Every loader failure becomes one start-up error in our words.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from stevedore import driver as stevedore_driver
from stevedore.exception import NoMatches

from ..errors import ConfigError, DriverUnavailable
from . import auto
from .base import Driver
from .disk import DiskDriver
from .exec import ExecDriver
from .limits import LimitsDriver
from .network import NetworkDriver
from .rootfs import RootfsDriver

if TYPE_CHECKING:
    from ..config import Settings

BASES: dict[str, type[Driver]] = {
    "rootfs": RootfsDriver, "network": NetworkDriver, "disk": DiskDriver,
    "limits": LimitsDriver, "exec": ExecDriver,
}

__all__ = ["BASES", "Driver", "DiskDriver", "ExecDriver", "LimitsDriver", "NetworkDriver",
           "RootfsDriver", "installed_names", "load_driver_class", "load_drivers", "namespace"]


def namespace(subsystem: str) -> str:
    return f"warden.drivers.{subsystem}"


def installed_names(subsystem: str) -> list[str]:
    """Names of the installed drivers of a subsystem (stevedore's NoMatches does not list them)."""
    return sorted({ep.name for ep in entry_points(group=namespace(subsystem))})


def _reraise(manager, entrypoint, exc: Exception) -> None:
    raise exc


def load_driver_class(subsystem: str, name: str) -> type[Driver]:
    """Find the driver class named `name` and check it is a driver of that subsystem."""
    try:
        manager = stevedore_driver.DriverManager(
            namespace=namespace(subsystem), name=name, invoke_on_load=False,
            on_load_failure_callback=_reraise)
    except NoMatches:
        installed = ", ".join(installed_names(subsystem)) or "none"
        raise ConfigError(f"drivers.{subsystem}: no driver named {name!r} in "
                          f"{namespace(subsystem)} (installed: {installed})") from None
    except Exception as exc:  # import errors inside the plugin, multiple matches
        raise ConfigError(f"drivers.{subsystem}: cannot load driver {name!r}: {exc}") from exc
    cls = manager.driver
    base = BASES[subsystem]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"drivers.{subsystem}: {name!r} ({cls!r}) is not a subclass of "
                          f"{base.__module__}.{base.__name__}")
    return cls


def load_drivers(settings: Settings, overrides: dict[str, type[Driver]] | None = None) -> dict[str, Driver]:
    """Load, host-check and construct the configured driver of every subsystem.

    `overrides` injects driver classes by subsystem without entry points (tests, fakes).
    """
    drivers: dict[str, Driver] = {}
    for subsystem, configured in settings.drivers.selected().items():
        cls = (overrides or {}).get(subsystem)
        name = configured if cls else auto.resolve(subsystem, configured, settings)
        cls = cls or load_driver_class(subsystem, name)
        try:
            cls.check_host(settings)
        except DriverUnavailable as exc:
            raise DriverUnavailable(f"drivers.{subsystem}: {name}: {exc}") from exc
        drivers[subsystem] = cls(settings)
    return drivers
