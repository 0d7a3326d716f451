"""Base of drivers in the `warden.drivers.network` namespace."""

import abc

from .base import Driver


class NetworkDriver(Driver):
    subsystem = "network"

    @abc.abstractmethod
    def setup_net(self, container, settings):
        """See hookspecs.setup_net."""

    @abc.abstractmethod
    def teardown_net(self, container, record):
        """See hookspecs.teardown_net."""

    @abc.abstractmethod
    def net_in(self, container, host_port, container_port):
        """See hookspecs.net_in."""

    @abc.abstractmethod
    def net_out(self, container, rule):
        """See hookspecs.net_out."""

    @abc.abstractmethod
    def limit_bandwidth(self, container, rate, burst):
        """See hookspecs.limit_bandwidth."""
