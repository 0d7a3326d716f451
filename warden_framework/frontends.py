"""Front ends: a wire protocol that turns its clients' requests into calls on the one shared
core (server/runtime.py: orchestrator, drivers, pools, records). Several may serve at once,
over one set of containers: a container created through one is listed, inspected and
destroyed through another.

Front ends are plugins, loaded like drivers, from the entry point group `warden.frontends`.
The config's `frontends` section names the ones that run, each with its own options (the
front end checks them); without the section only the Warden protocol runs, as always:

    frontends:
      warden: {}                            # the Warden protocol on server.unix_domain_path
      garden: {listen_address: /run/garden.sock}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from stevedore import driver as stevedore_driver
from stevedore.exception import NoMatches

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Settings
    from .server.runtime import Runtime

NAMESPACE = "warden.frontends"


class FrontEnd(ABC):
    """One protocol's listeners. Constructed once the runtime holds the recovered containers;
    started before the server reports ready; drained (stop accepting, end connections as the
    protocol's drain says) before the runtime settles every record."""

    name: ClassVar[str] = ""

    def __init__(self, settings: Settings, runtime: Runtime, options: Mapping[str, Any]) -> None:
        self.settings = settings
        self.runtime = runtime
        self.options = options

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise ConfigError naming `frontends.<name>.<key>` for a bad option. Called when the
        config is loaded, before anything starts. The default accepts no option."""
        for key in options:
            raise ConfigError(f"frontends.{cls.name}.{key}: unknown option")

    @abstractmethod
    async def start(self) -> None:
        """Listen. A failure stops the server's start-up."""

    @abstractmethod
    async def drain(self) -> None:
        """Stop accepting and end the connections; return once they are closed."""


def installed_names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=NAMESPACE)})


def load_frontend_classes(settings: Settings) -> dict[str, type[FrontEnd]]:
    """The class of every configured front end, its options checked."""
    classes: dict[str, type[FrontEnd]] = {}
    for name, options in settings.frontends.items():
        try:
            cls = stevedore_driver.DriverManager(namespace=NAMESPACE, name=name,
                                                 invoke_on_load=False).driver
        except NoMatches:
            raise ConfigError(f"frontends: no front end named {name!r} in {NAMESPACE} "
                              f"(installed: {', '.join(installed_names()) or 'none'})") from None
        except Exception as exc:  # import errors inside the plugin
            raise ConfigError(f"frontends: cannot load front end {name!r}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, FrontEnd)):
            raise ConfigError(f"frontends: {name!r} ({cls!r}) is not a subclass of "
                              f"{FrontEnd.__module__}.{FrontEnd.__name__}")
        cls.check_options(options)
        classes[name] = cls
    return classes
