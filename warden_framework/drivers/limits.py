"""Base of drivers in the `warden.drivers.limits` namespace."""

import abc

from .. import hookimpl
from ..errors import DriverError
from .base import Driver


class LimitsDriver(Driver):
    subsystem = "limits"

    @abc.abstractmethod
    def apply_limits(self, container, settings):
        """See hookspecs.apply_limits."""

    @abc.abstractmethod
    def release_limits(self, container, record):
        """See hookspecs.release_limits."""

    @abc.abstractmethod
    def limit_memory(self, container, limit):
        """See hookspecs.limit_memory."""

    @abc.abstractmethod
    def limit_cpu(self, container, shares):
        """See hookspecs.limit_cpu."""

    # Hooks added after the first release get a default here, so a limits driver written
    # before them keeps loading; a driver that can do better overrides them.
    @hookimpl
    def limit_pids(self, container, limit):
        """See hookspecs.limit_pids. Default: this driver cannot limit processes."""
        raise DriverError(f"the {type(self).__name__} limits driver cannot limit processes")
