"""The one error this plugin raises (shared with the other cgroup driver through the core);
its text goes to the client verbatim."""

from warden_framework.cgroupfs import CgroupError

__all__ = ["CgroupError"]
