"""Boot a throw-away qemu guest on a pure cgroup v2 kernel, run pytest there as root in the
checkout, stream its output and exit with pytest's status.

Exit 77 with `SKIP: <reason>` when this host cannot boot a guest, 124 when the guest ran past
--timeout, 125 when it stopped without reporting pytest's status (the console tail follows).
"""

from __future__ import annotations

import argparse
import signal
import sys

from .host import GuestUnavailable
from .runner import (DEFAULT_CPUS, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, GuestError, GuestTimeout,
                     run_pytest)

EXIT_SKIP, EXIT_TIMEOUT, EXIT_GUEST_FAILED = 77, 124, 125


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warden_framework.testing.guest",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, metavar="MB",
                        help=f"guest RAM (default {DEFAULT_MEMORY_MB})")
    parser.add_argument("--cpus", type=int, default=DEFAULT_CPUS, metavar="N",
                        help=f"guest vCPUs, one host thread each (default {DEFAULT_CPUS})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"kill the guest after S seconds (default {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="after --: the arguments of pytest inside the guest")
    options = parser.parse_args(argv)
    pytest_args = options.pytest_args
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]
    # SIGTERM unwinds like Ctrl-C does, so qemu is killed and the scratch files removed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    colour = {"PY_COLORS": "1" if sys.stdout.isatty() else "0"}
    try:
        run = run_pytest(pytest_args, options.timeout, memory_mb=options.memory,
                         cpus=options.cpus, env=colour, stream=sys.stdout)
    except GuestUnavailable as exc:
        print(f"SKIP: {exc}")
        return EXIT_SKIP
    except GuestTimeout as exc:
        print(f"GUEST TIMEOUT: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except GuestError as exc:
        print(f"GUEST FAILED: {exc}", file=sys.stderr)
        return EXIT_GUEST_FAILED
    except KeyboardInterrupt:  # qemu is killed and the scratch files gone by now
        print("guest: interrupted", file=sys.stderr)
        return 130
    print(f"guest: pytest started {run.boot_seconds:.1f} s after launch, exit {run.rc} "
          f"after {run.total_seconds:.1f} s", file=sys.stderr)
    return run.rc


if __name__ == "__main__":
    sys.exit(main())
