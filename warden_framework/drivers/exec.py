"""Base of drivers in the `warden.drivers.exec` namespace."""

import abc

from .. import hookimpl
from ..errors import DriverError
from .base import Driver


class ExecDriver(Driver):
    subsystem = "exec"

    @abc.abstractmethod
    def setup_init(self, container, settings):
        """See hookspecs.setup_init."""

    @abc.abstractmethod
    def start_init(self, container, record):
        """See hookspecs.start_init."""

    @abc.abstractmethod
    def teardown_init(self, container, record):
        """See hookspecs.teardown_init."""

    @abc.abstractmethod
    def spawn(self, container, job, settings):
        """See hookspecs.spawn."""

    @abc.abstractmethod
    def signal_job(self, container, job, signo):
        """See hookspecs.signal_job."""

    @abc.abstractmethod
    def stop(self, container, kill, timeout):
        """See hookspecs.stop."""

    # Hooks added after the first release get a default here, so an exec driver written
    # before them keeps loading; a driver that can do better overrides them.
    @hookimpl
    def resize_tty(self, container, job, rows, columns):
        """See hookspecs.resize_tty. Default: this driver makes no TTYs."""
        raise DriverError(f"the {type(self).__name__} exec driver has no TTY support")
