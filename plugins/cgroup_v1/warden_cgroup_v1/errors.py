"""The one error this plugin raises; its text goes to the client verbatim."""

from warden_framework.errors import DriverError


class CgroupError(DriverError):
    """A cgroup operation failed; str() is the message (texts from warden-facts §2.2)."""
