"""Builds wshd into this distribution's wheel: `warden_wshd_exec/bin/wshd`, compiled from the C
sources at build time, so an installed wheel needs no checkout (warden_wshd_exec/binary.py
finds the binary there). Metadata is pyproject.toml's; this file only adds build steps.

Where the C sources are, first found wins:
  1. $WARDEN_WSHD_SOURCE (a build from a copy of this directory, e.g. the pip-install tests);
  2. `native-wshd/` here: an sdist carries its own copy (added by `sdist` below);
  3. ../../native/wshd: this directory inside the checkout.
make runs in a temporary copy of that directory, so no object file lands in the sources.
It needs make, a C compiler and libseccomp-dev (Debian names).

The wheel is tagged py3-none-<platform>: it holds a native executable, not a Python extension,
so any Python 3 on that platform can use it. An editable install (`pip install -e`, as
scripts/bootstrap.sh does) builds nothing: the driver then runs the checkout's native/wshd/wshd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import ExecError, SetupError

HERE = Path(__file__).resolve().parent
SOURCE_ENV = "WARDEN_WSHD_SOURCE"
SDIST_COPY = "native-wshd"
CHECKOUT_SOURCE = HERE.parent.parent / "native" / "wshd"
PACKAGE = "warden_wshd_exec"
# What a build of the sources leaves beside them: never copied, never shipped.
BUILD_PRODUCTS = ("*.o", "wshd", "test_proto", "test_sandbox", "__pycache__")


def wshd_source() -> Path:
    """The directory holding wshd's Makefile, or a build error saying where it looked."""
    named = os.environ.get(SOURCE_ENV)
    candidates = [Path(named)] if named else [HERE / SDIST_COPY, CHECKOUT_SOURCE]
    for candidate in candidates:
        if (candidate / "Makefile").is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    hint = (f"${SOURCE_ENV} names a directory without a Makefile" if named else
            f"set {SOURCE_ENV} to the checkout's native/wshd when building from a copy")
    raise SetupError(f"warden-wshd-exec: wshd's C sources not found (looked in {looked}); {hint}")


def compile_wshd(source: Path, dest: Path) -> None:
    """`make wshd` in a temporary copy of `source`; the binary is copied to `dest`."""
    with tempfile.TemporaryDirectory(prefix="wshd-build-") as tmp:
        work = Path(tmp) / "wshd"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns(*BUILD_PRODUCTS))
        done = subprocess.run(["make", "-s", "-C", str(work), "wshd"], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise ExecError(f"warden-wshd-exec: `make wshd` in a copy of {source} failed "
                            f"(exit {done.returncode}; it needs make, a C compiler and "
                            f"libseccomp-dev):\n{done.stdout}{done.stderr}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / "wshd", dest)
        dest.chmod(0o755)


class BuildWithWshd(build_py):
    """build_py, then wshd compiled into the build tree's package (`bin/wshd`)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            compile_wshd(wshd_source(), self._binary())

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, str(self._binary())]

    def _binary(self) -> Path:
        return Path(self.build_lib) / PACKAGE / "bin" / "wshd"


class WithExecutable(Distribution):
    """A distribution that is not pure Python: its wheel holds an executable, so bdist_wheel
    tags it for the platform and lays the package out as platlib."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """Tagged for this platform (the executable) but for any Python 3 (not an extension)."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


class SdistWithSources(sdist):
    """The sdist carries wshd's C sources as native-wshd/, so it builds without a checkout."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        shutil.copytree(wshd_source(), Path(base_dir) / SDIST_COPY,
                        ignore=shutil.ignore_patterns(*BUILD_PRODUCTS))


setup(distclass=WithExecutable,
      cmdclass={"build_py": BuildWithWshd, "bdist_wheel": PlatformWheel,
                "sdist": SdistWithSources})
