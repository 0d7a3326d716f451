"""Meta-test (STYLE §6.7, §6.11 rule 7): every hookspec is exercised by a test function named
`test_hook_<name>` or `test_hook_<name>_<what>`, found by parsing the repository's test files.

Owns only the check; the tests themselves live next to the code they exercise.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from warden_framework.plugins import hook_names

REPO = Path(__file__).resolve().parents[2]
PREFIX = "test_hook_"


def repository_test_files(repo: Path = REPO) -> Iterator[Path]:
    """The .py files under tests/ and under every plugin's tests/ folder."""
    yield from sorted((repo / "tests").rglob("*.py"))
    yield from sorted(repo.glob("plugins/*/tests/**/*.py"))


def hook_test_names(paths: Iterator[Path]) -> set[str]:
    """Names of every function or method called test_hook_*, comments and strings ignored."""
    names = set()
    for path in paths:
        tree = ast.parse(path.read_bytes(), filename=str(path))
        names.update(node.name for node in ast.walk(tree)
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and node.name.startswith(PREFIX))
    return names


def untested_hooks(hooks: list[str], tests: set[str]) -> list[str]:
    """Hooks with no test named exactly test_hook_<hook> or starting test_hook_<hook>_."""
    def covered(hook: str) -> bool:
        exact = PREFIX + hook
        return any(name == exact or name.startswith(exact + "_") for name in tests)

    return [hook for hook in hooks if not covered(hook)]


def test_every_hookspec_has_a_test_hook_function() -> None:
    tests = hook_test_names(repository_test_files())
    missing = untested_hooks(hook_names(), tests)
    assert not missing, ("hookspecs without a test named test_hook_<name>[_<what>] under tests/ "
                         f"or plugins/*/tests/: {', '.join(missing)}")


def test_matching_is_by_whole_hook_name(tmp_path: Path) -> None:
    source = tmp_path / "test_sample.py"
    source.write_text('# def test_hook_stop_in_a_comment(): pass\n'
                      'TEXT = "def test_hook_spawn(): pass"\n'
                      'def test_hook_setup_fsx_is_another_hook(): pass\n'
                      'class TestGroup:\n'
                      '    def test_hook_setup_net_in_a_class(self): pass\n'
                      'async def test_hook_info(): pass\n')
    tests = hook_test_names(iter([source]))
    assert tests == {"test_hook_setup_fsx_is_another_hook", "test_hook_setup_net_in_a_class",
                     "test_hook_info"}
    assert untested_hooks(["stop", "spawn", "setup_fs", "setup_net", "info", "net_in"],
                          tests) == ["stop", "spawn", "setup_fs", "net_in"]
