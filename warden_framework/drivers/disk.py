"""Base of drivers in the `warden.drivers.disk` namespace."""

import abc

from .base import Driver


class DiskDriver(Driver):
    subsystem = "disk"

    @abc.abstractmethod
    def setup_disk(self, container, settings):
        """See hookspecs.setup_disk."""

    @abc.abstractmethod
    def teardown_disk(self, container, record):
        """See hookspecs.teardown_disk."""

    @abc.abstractmethod
    def limit_disk(self, container, limits):
        """See hookspecs.limit_disk."""
