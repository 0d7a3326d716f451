"""Base of drivers in the `warden.drivers.limits` namespace."""

import abc

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
