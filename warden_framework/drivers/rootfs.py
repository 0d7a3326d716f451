"""Base of drivers in the `warden.drivers.rootfs` namespace."""

import abc

from .base import Driver


class RootfsDriver(Driver):
    subsystem = "rootfs"

    @abc.abstractmethod
    def setup_fs(self, container, settings):
        """See hookspecs.setup_fs."""

    @abc.abstractmethod
    def teardown_fs(self, container, record):
        """See hookspecs.teardown_fs."""

    @abc.abstractmethod
    def copy_in(self, container, src_path, dst_path):
        """See hookspecs.copy_in."""

    @abc.abstractmethod
    def copy_out(self, container, src_path, dst_path, owner):
        """See hookspecs.copy_out."""
