"""The leak checker's cgroup inventory (warden_framework.testing.leaks.cgroups) on plain
directories laid out like the three cgroup layouts: v1, hybrid, pure v2."""

from warden_framework.testing import leaks


def _tree(root, *dirs, files=()):
    for d in dirs:
        (root / d).mkdir(parents=True)
    for f in files:
        (root / f).write_text("")
    return root


def test_v1_hierarchies_are_searched_and_systemds_named_one_is_not(tmp_path):
    root = _tree(tmp_path, "memory/wt01/c1", "pids/warden-x", "memory/user.slice",
                 "systemd/wt02")
    assert leaks.cgroups(root) == {f"{root}/memory/wt01", f"{root}/memory/wt01/c1",
                                   f"{root}/pids/warden-x"}


def test_hybrid_layout_also_searches_the_unified_hierarchy(tmp_path):
    root = _tree(tmp_path, "memory/wt01", "unified/wt01/c1", "unified/init.scope",
                 files=["unified/cgroup.controllers"])
    assert leaks.cgroups(root) == {f"{root}/memory/wt01", f"{root}/unified/wt01",
                                   f"{root}/unified/wt01/c1"}


def test_pure_v2_root_is_itself_the_hierarchy(tmp_path):
    root = _tree(tmp_path, "wt01/c1", "instance-9", "system.slice/wt03",
                 files=["cgroup.controllers", "cgroup.procs", "io.pressure", "wt01/cgroup.procs"])
    assert leaks.cgroups(root) == {f"{root}/wt01", f"{root}/wt01/c1", f"{root}/instance-9"}


def test_a_missing_root_has_no_groups(tmp_path):
    assert leaks.cgroups(tmp_path / "absent") == set()
