"""Unit tests of cgroups.py on a fake cgroup root (no root needed)."""

import signal
from pathlib import Path

import pytest

from warden_cgroup_v1 import cgroups
from warden_cgroup_v1.errors import CgroupError


def test_discover_maps_each_mounted_controller_and_skips_named_and_v2(fake_fs) -> None:
    found = fake_fs.hierarchies()
    assert found == {name: fake_fs.root / name for name in fake_fs.mounts}


def test_discover_gives_both_controllers_of_a_combined_mount_one_directory(
    combined_fs,
) -> None:
    found = combined_fs.hierarchies()
    assert found["cpu"] == found["cpuacct"] == combined_fs.root / "cpu,cpuacct"
    assert set(found) == {"cpu", "cpuacct", "cpuset", "memory", "devices"}


def test_discover_ignores_disabled_controllers_and_mounts_elsewhere(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    mountinfo = tmp_path / "mountinfo"
    proc_cgroups = tmp_path / "cgroups"
    mountinfo.write_text(
        f"1 0 0:1 / {root}/memory rw - cgroup cgroup rw,memory\n"
        f"2 0 0:2 / {root}/net_cls rw - cgroup cgroup rw,net_cls\n"
        f"3 0 0:3 / {tmp_path}/other/cpu rw - cgroup cgroup rw,cpu\n"
        f"4 0 0:4 / {root}/with\\040space rw shared:5 - cgroup cgroup rw,pids\n"
    )
    proc_cgroups.write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
                            "memory\t1\t1\t1\nnet_cls\t2\t1\t0\ncpu\t3\t1\t1\npids\t4\t1\t1\n")
    found = cgroups.discover_hierarchies(root, mountinfo, proc_cgroups)
    assert found == {"memory": root / "memory", "pids": root / "with space"}


def test_check_required_names_the_missing_controllers() -> None:
    with pytest.raises(CgroupError, match="not mounted under /x: cpuacct, devices"):
        cgroups.check_required({"cpu": Path("/x/cpu"), "memory": Path("/x/memory")}, Path("/x"))


def test_create_makes_prefix_and_group_in_every_hierarchy(fake_fs) -> None:
    paths = cgroups.create(fake_fs.root, "pfx", "c1", fake_fs.hierarchies())
    assert paths.memory == fake_fs.root / "memory" / "pfx" / "c1"
    for name in fake_fs.mounts:
        assert (fake_fs.root / name / "pfx" / "c1").is_dir()


def test_create_copies_cpuset_cpus_and_mems_into_prefix_and_group(fake_fs) -> None:
    paths = cgroups.create(fake_fs.root, "pfx", "c1", fake_fs.hierarchies())
    for group in (paths["cpuset"].parent, paths["cpuset"]):
        assert (group / "cpuset.cpus").read_text() == "0-1"
        assert (group / "cpuset.mems").read_text() == "0"


def test_create_keeps_cpuset_already_set_on_the_prefix(fake_fs) -> None:
    hierarchies = fake_fs.hierarchies()
    cgroups.create(fake_fs.root, "pfx", "c1", hierarchies)
    fake_fs.writes.clear()
    cgroups.create(fake_fs.root, "pfx", "c2", hierarchies)
    written = {path.parent.name for path, _ in fake_fs.writes}
    assert written == {"c2"}


def test_create_on_combined_mount_makes_one_directory(combined_fs) -> None:
    paths = cgroups.create(combined_fs.root, "pfx", "c1", combined_fs.hierarchies())
    assert paths.cpu == paths.cpuacct
    assert len(paths.directories()) == 4


def test_create_rejects_a_name_with_a_slash(fake_fs) -> None:
    with pytest.raises(ValueError, match="not a cgroup name"):
        cgroups.create(fake_fs.root, "pfx", "../x", fake_fs.hierarchies())


def test_add_task_writes_the_pid_to_cgroup_procs_of_each_directory_once(
    combined_fs,
) -> None:
    paths = cgroups.create(combined_fs.root, "pfx", "c1", combined_fs.hierarchies())
    combined_fs.writes.clear()
    cgroups.add_task(paths, 4242)
    expected = [(d / "cgroup.procs", "4242") for d in paths.directories()]
    assert sorted(combined_fs.writes) == sorted(expected)


def test_add_task_to_a_missing_group_names_pid_and_group(fake_fs) -> None:
    paths = cgroups.group_paths(fake_fs.root, "pfx", "gone", fake_fs.hierarchies())
    with pytest.raises(CgroupError, match=r"add process 7 to cgroup .*/pfx/gone"):
        cgroups.add_task(paths, 7)


def test_remove_kills_remaining_processes_then_removes_every_group(fake_fs) -> None:
    hierarchies = fake_fs.hierarchies()
    paths = cgroups.create(fake_fs.root, "pfx", "c1", hierarchies)
    fake_fs.put_process(paths.cpu, 11)
    fake_fs.put_process(paths.memory, 12)
    cgroups.remove(fake_fs.root, "pfx", "c1", hierarchies=hierarchies)
    assert fake_fs.kills == [([11, 12], signal.SIGKILL)]
    assert not any(d.exists() for d in paths.directories())
    assert all(d.parent.is_dir() for d in paths.directories())


def test_remove_takes_nested_groups_first(fake_fs) -> None:
    hierarchies = fake_fs.hierarchies()
    paths = cgroups.create(fake_fs.root, "pfx", "c1", hierarchies)
    fake_fs.make_group(paths.memory / "inner")
    fake_fs.put_process(paths.memory / "inner", 13)
    cgroups.remove(fake_fs.root, "pfx", "c1", hierarchies=hierarchies)
    assert fake_fs.kills == [([13], signal.SIGKILL)]
    assert not paths.memory.exists()


def test_remove_twice_and_remove_of_a_partial_group_succeed(fake_fs) -> None:
    hierarchies = fake_fs.hierarchies()
    paths = cgroups.create(fake_fs.root, "pfx", "c1", hierarchies)
    fake_fs.remove_group(paths.memory)
    cgroups.remove(fake_fs.root, "pfx", "c1", hierarchies=hierarchies)
    cgroups.remove(fake_fs.root, "pfx", "c1", hierarchies=hierarchies)
    assert cgroups.list_ids(fake_fs.root, "pfx", hierarchies) == []


def test_remove_names_the_group_when_a_process_survives(
    fake_fs, monkeypatch: pytest.MonkeyPatch
) -> None:
    hierarchies = fake_fs.hierarchies()
    paths = cgroups.create(fake_fs.root, "pfx", "c1", hierarchies)
    fake_fs.put_process(paths.cpu, 99)
    monkeypatch.setattr(cgroups.kernel, "kill_and_wait", lambda pids, sig, timeout: list(pids))
    with pytest.raises(CgroupError, match=r"remove cgroup pfx/c1: processes \[99\] did not exit"):
        cgroups.remove(fake_fs.root, "pfx", "c1", timeout=0.0, hierarchies=hierarchies)


def test_list_ids_unites_hierarchies(fake_fs) -> None:
    hierarchies = fake_fs.hierarchies()
    cgroups.create(fake_fs.root, "pfx", "b", hierarchies)
    paths = cgroups.create(fake_fs.root, "pfx", "a", hierarchies)
    for directory in paths.directories()[1:]:
        fake_fs.remove_group(directory)
    assert cgroups.list_ids(fake_fs.root, "pfx", hierarchies) == ["a", "b"]
    assert cgroups.list_ids(fake_fs.root, "nothing", hierarchies) == []


def test_remove_prefix_keeps_a_prefix_that_still_has_groups(fake_fs) -> None:
    hierarchies = fake_fs.hierarchies()
    cgroups.create(fake_fs.root, "pfx", "c1", hierarchies)
    assert cgroups.remove_prefix(fake_fs.root, "pfx", hierarchies) is False
    assert (fake_fs.root / "memory" / "pfx").is_dir()
    cgroups.remove(fake_fs.root, "pfx", "c1", hierarchies=hierarchies)
    assert cgroups.remove_prefix(fake_fs.root, "pfx", hierarchies) is True
    assert not any((fake_fs.root / name / "pfx").exists() for name in fake_fs.mounts)
    assert cgroups.remove_prefix(fake_fs.root, "pfx", hierarchies) is True
