"""The pidfd signal path the driver kills a container's init with (kernel.pidfd_kill)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from warden_wshd_exec import kernel


def test_pidfd_kill_kills_and_a_second_signal_finds_no_process() -> None:
    proc = subprocess.Popen(["sleep", "100"])
    pidfd = os.pidfd_open(proc.pid)
    try:
        assert kernel.pidfd_kill(pidfd, 5.0) is True
        assert proc.wait(5) == -signal.SIGKILL
        with pytest.raises(ProcessLookupError):
            kernel.pidfd_send_signal(pidfd, signal.SIGTERM)
    finally:
        os.close(pidfd)


def test_a_bad_descriptor_is_an_os_error() -> None:
    with pytest.raises(OSError) as refused:
        kernel.pidfd_send_signal(os.open("/", os.O_RDONLY | os.O_CLOEXEC), signal.SIGTERM)
    assert not isinstance(refused.value, ProcessLookupError)

