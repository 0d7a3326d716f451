"""Test-only fault injection: a pluggy wrapper that fails or kills the server at a named hook.

In-process tests register `FaultPlugin(hook, action)` (running_server's extra_plugins). A
server subprocess gets one from this module's command line, which starts the production
server with the plugin registered beside the drivers; the production code never looks for
faults:

    python -m warden_framework.testing.faults setup_fs:kill --config warden.yml
"""

from __future__ import annotations

import os
import signal
import sys

from .. import hookimpl
from ..errors import DriverError

INJECTABLE = ("setup_fs", "setup_init", "apply_limits", "setup_disk", "setup_net", "start_init",
              "teardown_net", "teardown_disk", "teardown_init", "release_limits", "teardown_fs")


class FaultPlugin:
    def __init__(self, hook: str, action: str = "raise") -> None:
        if hook not in INJECTABLE or action not in ("raise", "kill"):
            raise ValueError(f"cannot inject {action!r} at {hook!r}: hooks {', '.join(INJECTABLE)}; "
                             f"actions raise, kill")
        self.hook = hook
        self.action = action

        def fault(container):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise DriverError(f"injected fault in {hook} of {container.id}")
            yield  # a wrapper is a generator; never reached

        setattr(self, f"fault_{hook}", hookimpl(wrapper=True, specname=hook)(fault))

    @classmethod
    def parse(cls, text: str) -> FaultPlugin:
        """`<hook>:<raise|kill>` (the action defaults to raise)."""
        hook, _, action = text.partition(":")
        return cls(hook, action or "raise")


def main(argv: list[str] | None = None) -> int:
    """warden-server's command line, after a first argument naming the fault."""
    from ..server.main import main as server_main

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m warden_framework.testing.faults <hook>:<raise|kill> "
              "[warden-server arguments]", file=sys.stderr)
        return 2
    return server_main(args[1:], extra_plugins=[FaultPlugin.parse(args[0])])


if __name__ == "__main__":
    sys.exit(main())
