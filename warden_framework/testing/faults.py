"""Test-only fault injection: a pluggy wrapper that fails or kills the server at a named hook.

Off by default. In-process tests register `FaultPlugin(hook, action)`; a server subprocess
takes it from the environment, `WARDEN_TEST_FAULT=<hook>:<raise|kill>` (see server.main).
"""

from __future__ import annotations

import os
import signal

from .. import hookimpl
from ..errors import DriverError

FAULT_ENV = "WARDEN_TEST_FAULT"
INJECTABLE = ("setup_fs", "setup_init", "apply_limits", "setup_disk", "setup_net", "start_init",
              "teardown_net", "teardown_disk", "teardown_init", "release_limits", "teardown_fs")


class FaultPlugin:
    def __init__(self, hook: str, action: str = "raise") -> None:
        if hook not in INJECTABLE or action not in ("raise", "kill"):
            raise ValueError(f"{FAULT_ENV}: cannot inject {action!r} at {hook!r}")
        self.hook = hook
        self.action = action

        def fault(container):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise DriverError(f"injected fault in {hook} of {container.id}")
            yield  # a wrapper is a generator; never reached

        setattr(self, f"fault_{hook}", hookimpl(wrapper=True, specname=hook)(fault))


def from_environment() -> list[FaultPlugin]:
    value = os.environ.get(FAULT_ENV)
    if not value:
        return []
    hook, _, action = value.partition(":")
    return [FaultPlugin(hook, action or "raise")]
