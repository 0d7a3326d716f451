"""Each plugin folder tells its story (issue 16): a README that says what the plugin needs from
the kernel, its config keys and how to test it; a kernel.py holding every kernel call, so that
the seam tests replace is one module; and driver classes whose docstrings name every hook they
implement, inherited ones with the class they come from. Also: no errno number written as a
literal, and bench/ independent of any plugin's insides.

Pure: files are read and parsed, entry-point classes imported; nothing touches the kernel.
"""

from __future__ import annotations

import ast
import errno
import importlib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_framework import hookimpl

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
FRAMEWORK = ROOT / "warden_framework"
BENCH = ROOT / "bench"
PLUGIN_DIRS = sorted(p.parent for p in PLUGINS.glob("*/pyproject.toml"))
HOOKIMPL_ATTR = f"{hookimpl.project_name}_impl"  # what pluggy's marker sets on a method

README_HEADINGS = ("## Needs from the kernel", "## Config", "## Tests")

KERNEL_IMPORTS = ("ctypes", "iptc", "pyroute2")
PROCESS_CALLS = {
    "subprocess": {"run", "Popen", "call", "check_call", "check_output", "getoutput",
                   "getstatusoutput"},
    "os": {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv",
           "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv",
           "spawnve", "spawnl", "spawnle"},
}
# Modules outside a kernel.py that may call the kernel this way, each with its reason.
KERNEL_CALLS_ALLOWED = {
    "warden_framework/cgroupfs.py": "the core's cgroup file layer; both cgroup plugins' "
                                    "kernel.py re-export it",
    "warden_framework/testing": "the kit for plugin tests: probes and fakes of the kernel",
    "warden_framework/rootfs/__init__.py": "the `warden-rootfs` command: runs the build "
                                           "script (apt, dpkg-deb), no kernel work",
}

ERRNO_NAMES = set(errno.errorcode.values())
ERRNO_HOLDERS = {"errno", "err", "errnum", "error_code"}  # names that hold an errno value
ERROR_CLASS = re.compile(r"(Error|Exception)$")


def package_files(plugin: Path) -> list[Path]:
    """The plugin's package modules (its tests are not part of the plugin's code)."""
    return sorted(plugin.glob(f"warden_{plugin.name}/**/*.py"))


def entry_points(plugin: Path, kinds: tuple[str, ...] = ("warden.drivers.", "warden.plugins")
                 ) -> Iterator[tuple[str, str]]:
    """(entry point name, "module:Class") of every driver and hook plugin the plugin
    publishes (front ends, `warden.frontends`, implement no hook: they call the core)."""
    project = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    for group, points in project.get("entry-points", {}).items():
        if group.startswith(kinds):
            yield from points.items()


DRIVERS = [pytest.param(target, id=f"{plugin.name}:{name}")
           for plugin in PLUGIN_DIRS for name, target in entry_points(plugin)]


def test_every_plugin_folder_is_found() -> None:
    assert {p.name for p in PLUGIN_DIRS} >= {"aufs", "cgroup_v1", "cgroup_v2", "iptables_net",
                                             "overlayfs", "quota_disk", "rootfs_common",
                                             "wshd_exec"}
    assert DRIVERS, "no entry points found in plugins/*/pyproject.toml"


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=lambda p: p.name)
def test_readme_has_the_kernel_config_and_tests_headings(plugin: Path) -> None:
    lines = {line.rstrip() for line in (plugin / "README.md").read_text().splitlines()}
    missing = [heading for heading in README_HEADINGS if heading not in lines]
    assert not missing, f"{plugin.name}/README.md lacks the headings {missing}"


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=lambda p: p.name)
def test_every_plugin_has_a_kernel_module(plugin: Path) -> None:
    """Drivers and their libraries talk to the kernel, through kernel.py; a front end or an
    observer makes no kernel call at all (the scan below checks that either way)."""
    if not list(entry_points(plugin, ("warden.drivers.",))) and plugin.name != "rootfs_common":
        pytest.skip(f"{plugin.name} publishes no driver: it calls the core, not the kernel")
    assert (plugin / f"warden_{plugin.name}" / "kernel.py").is_file()


def hookimpls(cls: type) -> dict[str, type]:
    """Each hook `cls` implements, as pluggy finds it (marked attributes, inherited ones
    included), mapped to the class in its MRO that defines it."""
    found = {}
    for name in dir(cls):
        if hasattr(getattr(cls, name, None), HOOKIMPL_ATTR):
            found[name] = next(c for c in cls.__mro__ if name in vars(c))
    return found


@pytest.mark.parametrize("target", DRIVERS)
def test_driver_docstring_names_every_hook_and_where_inherited_ones_come_from(
        target: str) -> None:
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not isinstance(cls, type):  # an observer's entry point may name its instance
        cls = type(cls)
    hooks = hookimpls(cls)
    assert hooks, f"{target} implements no hook"
    doc = vars(cls).get("__doc__") or ""  # its own: a class docstring is not inherited
    words = set(re.findall(r"\w+", doc))
    missing = sorted(hook for hook in hooks if hook not in words)
    assert not missing, f"{target}'s docstring does not name its hooks {missing}"
    sources = sorted({f"{owner.__module__}.{owner.__qualname__}" for owner in hooks.values()
                      if owner is not cls and owner.__qualname__ not in words})
    assert not sources, f"{target}'s docstring does not say its hooks come from {sources}"


def for_type_checkers(tree: ast.AST) -> set[ast.AST]:
    """The nodes under `if TYPE_CHECKING:`, which never run."""
    return {inner for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for stmt in node.body for inner in ast.walk(stmt)}


def kernel_calls(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) of each import of a kernel-binding library and each process started."""
    never_run = for_type_checkers(tree)
    for node in ast.walk(tree):
        if node in never_run:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
            if node.module in PROCESS_CALLS:
                names += [f"{node.module}.{a.name}" for a in node.names
                          if a.name in PROCESS_CALLS[node.module]]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name)
              and node.func.attr in PROCESS_CALLS.get(node.func.value.id, ())):
            yield node.lineno, f"{node.func.value.id}.{node.func.attr}()"
            continue
        else:
            continue
        for name in names:
            top, _, member = name.partition(".")
            if top in KERNEL_IMPORTS or member in PROCESS_CALLS.get(top, ()):
                yield node.lineno, f"import {name}"


def checked_modules() -> Iterator[Path]:
    """Every module of the plugins and the core but the kernel.py files and the allowed."""
    for path in [*(p for d in PLUGIN_DIRS for p in package_files(d)), *FRAMEWORK.rglob("*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        allowed = any(rel == name or rel.startswith(name + "/") for name in KERNEL_CALLS_ALLOWED)
        if path.name != "kernel.py" and not allowed:
            yield path


def test_only_kernel_modules_call_the_kernel_through_ctypes_iptc_pyroute2_or_processes(
        ) -> None:
    stray = [f"{path.relative_to(ROOT)}:{line}: {what}"
             for path in checked_modules()
             for line, what in kernel_calls(ast.parse(path.read_text(), str(path)))]
    assert not stray, "kernel calls outside a kernel.py (move them there):\n" + "\n".join(stray)


def test_the_kernel_call_scan_finds_what_it_looks_for() -> None:
    source = ("import ctypes\nfrom pyroute2.netlink import x\nimport subprocess\n"
              "subprocess.run(['true'])\nfrom subprocess import Popen\nos.fork()\n"
              "subprocess.DEVNULL\nif TYPE_CHECKING:\n    from subprocess import Popen\n"
              "proc: subprocess.Popen[bytes]\n")
    assert sorted(line for line, _ in kernel_calls(ast.parse(source))) == [1, 2, 4, 5, 6]


def errno_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, code) of each errno number written as a literal: `ENOENT = 2`, an errno
    compared with a number other than 0, an OSError-like built with a number first."""
    def number(node: ast.AST) -> bool:
        if isinstance(node, ast.UnaryOp):
            node = node.operand
        return isinstance(node, ast.Constant) and type(node.value) is int and node.value != 0

    def holds_errno(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "errno"
                or isinstance(node, ast.Name) and node.id in ERRNO_HOLDERS
                or isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get_errno")

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and number(node.value) and any(
                isinstance(t, ast.Name) and t.id in ERRNO_NAMES for t in node.targets):
            yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            values = [e for s in sides
                      for e in (s.elts if isinstance(s, (ast.Tuple, ast.List, ast.Set)) else [s])]
            if any(map(holds_errno, sides)) and any(map(number, values)):
                yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Call) and node.args and number(node.args[0]):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if ERROR_CLASS.search(name) and not name.startswith("HTTP"):  # a status
                yield node.lineno, ast.unparse(node)


def test_no_errno_number_is_written_as_a_literal() -> None:
    paths = [*PLUGINS.rglob("*.py"), *FRAMEWORK.rglob("*.py")]
    found = [f"{path.relative_to(ROOT)}:{line}: {code}"
             for path in paths if ".egg-info" not in path.as_posix()
             for line, code in errno_literals(ast.parse(path.read_text(), str(path)))]
    assert not found, "use the errno module's names:\n" + "\n".join(found)


def test_the_errno_scan_finds_what_it_looks_for() -> None:
    source = ("ENOENT = 2\nif exc.errno == 17: pass\nif err in (2, 22): pass\n"
              "raise OSError(2, 'x')\nif exc.errno == errno.ENOENT: pass\n"
              "if result.returncode == 1: pass\nEXIT = 3\nif code == 0: pass\n")
    assert sorted(line for line, _ in errno_literals(ast.parse(source))) == [1, 2, 3, 4]


def test_bench_uses_no_plugin_module() -> None:
    packages = {f"warden_{p.name}" for p in PLUGIN_DIRS}
    found = []
    for path in BENCH.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                      for name in names if name.split(".")[0] in packages]
    assert not found, "bench/ imports plugin modules:\n" + "\n".join(found)
