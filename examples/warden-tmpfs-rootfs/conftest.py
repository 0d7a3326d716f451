"""The core's test kit for this distribution's tests: its leak checker runs around each one."""

pytest_plugins = ["warden_framework.testing.plugin"]
