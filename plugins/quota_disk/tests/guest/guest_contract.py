"""Runs the framework's disk contract against SetquotaDriver (test_disk_contract.py,
TestSetquotaDiskContract) with pytest inside the qemu guest that run-guest.sh boots, with the
depot on the usrquota mount that WARDEN_TEST_QUOTA_DEPOT names. pytest's output is what
test_setquota_guest.py checks (run-guest.sh prefixes it with GUEST-PYTEST).

With --list-files (on the host, with Debian's python3 -S as in the guest) it collects the same
tests instead and prints every file the run needs, which run-guest.sh copies into the
initramfs: the source and cached bytecode of every module loaded, what a run imports only
later (pytest's failure reports), and the files pytest reads (pyproject.toml, conftest.py, the
test file). pytest's own output then goes to stderr; a failed collection exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys

CONTRACT_TEST = "plugins/quota_disk/tests/test_disk_contract.py"
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-k", "Setquota", CONTRACT_TEST]
IMPORTED_LATER = ("difflib", "pprint", "unittest")  # pytest's assertion diffs and plugins


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", required=True, help="colon-separated entries for sys.path")
    parser.add_argument("--top", required=True, help="the project's root, where pytest runs")
    parser.add_argument("--list-files", action="store_true")
    return parser.parse_args()


def collect_to_stderr(pytest) -> int:
    """Collect the contract as the guest runs it, with pytest writing to stderr."""
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        return pytest.main(["--collect-only", *PYTEST_ARGS])
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)


def loaded_files() -> set[str]:
    files = set()
    for module in list(sys.modules.values()):
        for name in ("__file__", "__cached__"):
            path = getattr(module, name, None)
            if isinstance(path, str) and os.path.exists(path):
                files.add(os.path.abspath(path))
    return files


def main() -> None:
    args = parse_args()
    sys.path[:0] = args.path.split(":")
    os.chdir(args.top)
    import pytest

    if not args.list_files:
        sys.exit(pytest.main(PYTEST_ARGS))
    status = collect_to_stderr(pytest)
    if status != 0:
        sys.exit(f"guest_contract.py: collecting {CONTRACT_TEST} failed (pytest exit {status})")
    for name in IMPORTED_LATER:
        __import__(name)
    read_by_pytest = {os.path.join(args.top, name)
                      for name in ("pyproject.toml", "conftest.py", CONTRACT_TEST)}
    print("\n".join(sorted(loaded_files() | read_by_pytest)))


if __name__ == "__main__":
    main()
