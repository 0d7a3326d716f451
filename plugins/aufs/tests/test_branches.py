"""branches: the aufs mount's source, type, flags and option data, from paths alone."""

from pathlib import Path

import pytest

from warden_aufs import branches


def test_union_mount_puts_the_upper_first_read_write_and_the_lower_read_only_with_whiteouts():
    m = branches.union_mount(Path("/depot/c1/upper"), Path("/rootfs"), Path("/depot/c1/xino"),
                             Path("/depot/c1/rootfs"))
    assert m == branches.AufsMount(
        source="none", target=Path("/depot/c1/rootfs"), fstype="aufs", flags=0,
        data=b"br:/depot/c1/upper=rw:/rootfs=ro+wh,xino=/depot/c1/xino")


def test_union_mount_keeps_non_utf8_paths_byte_exact():
    upper = Path("/depot/\udcff/upper")  # the byte 0xff, as os.fsdecode gives it
    m = branches.union_mount(upper, Path("/rootfs"), Path("/x"), Path("/t"))
    assert m.data.startswith(b"br:/depot/\xff/upper=rw:")


@pytest.mark.parametrize("odd", ["a,b", "a:b", "a=b"])
@pytest.mark.parametrize("which", ["upper", "lower", "xino"])
def test_union_mount_refuses_option_separators_in_any_path(odd: str, which: str):
    paths = {"upper": Path("/c/upper"), "lower": Path("/rootfs"), "xino": Path("/c/xino")}
    paths[which] = Path("/d") / odd
    with pytest.raises(branches.BranchPathError,
                       match=f"^path /d/{odd} contains one of , : =$"):
        branches.union_mount(paths["upper"], paths["lower"], paths["xino"], Path("/c/rootfs"))


def test_union_mount_refuses_a_relative_branch():
    with pytest.raises(branches.BranchPathError, match="^path rootfs is not absolute$"):
        branches.union_mount(Path("/c/upper"), Path("rootfs"), Path("/c/xino"), Path("/c/r"))
