"""binds.allowed_binds: sources judged after symlinks are resolved, resolved paths kept."""

from pathlib import Path

import pytest

from warden_framework.binds import allowed_binds
from warden_framework.errors import WardenError


def bind(src) -> dict:
    return {"src": str(src), "dst": "/mnt", "mode": "ro"}


def test_a_source_under_an_allowed_path_is_kept_resolved(tmp_path: Path) -> None:
    (tmp_path / "allowed" / "data").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "allowed" / "data")
    [got] = allowed_binds([bind(tmp_path / "link")], [str(tmp_path / "allowed")])
    assert got == {"src": str((tmp_path / "allowed" / "data").resolve()), "dst": "/mnt", "mode": "ro"}


def test_a_symlink_out_of_the_allowed_path_is_refused_naming_the_source(tmp_path: Path) -> None:
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "etc").symlink_to("/etc")
    with pytest.raises(WardenError, match=rf"^bind mount source {tmp_path}/allowed/etc is not "
                                          rf"under an allowed path \({tmp_path}/allowed: "
                                          r"server.bind_mount_allowed_paths\)$"):
        allowed_binds([bind(tmp_path / "allowed" / "etc")], [str(tmp_path / "allowed")])


@pytest.mark.parametrize("src", ["/", "/etc", "/tmp/../etc", "/usr/bin"])
def test_paths_that_only_look_like_a_prefix_are_refused(src: str) -> None:
    with pytest.raises(WardenError, match="is not under an allowed path"):
        allowed_binds([bind(src)], ["/tmp"])


def test_an_empty_list_refuses_every_bind_and_says_so() -> None:
    with pytest.raises(WardenError, match=r"\(none are allowed: "):
        allowed_binds([bind("/tmp")], [])
    assert allowed_binds([], []) == []


def test_a_missing_source_is_left_for_warden_s_own_error(tmp_path: Path) -> None:
    [got] = allowed_binds([bind("/nonexistent")], [str(tmp_path)])
    assert got["src"] == "/nonexistent"
