"""Pure logic: Warden's cpu shares to cgroup v2's cpu.weight and back."""

import math

import pytest

from warden_cgroup_v2 import cpu
from warden_cgroup_v2.errors import CgroupError

ALL_SHARES = range(0, cpu.SHARES_MAX + 1)


def v1_kept(shares: int) -> int:
    """What v1's kernel read back for `shares` (MIN_SHARES..MAX_SHARES clamp)."""
    return min(max(shares, cpu.SHARES_MIN), cpu.SHARES_MAX)


@pytest.mark.parametrize("shares, weight", [
    (0, 1), (1, 1), (2, 1), (3, 2), (1024, 100), (262144, 10000), (262145, 10000),
    (2**64 - 1, 10000),
])
def test_shares_to_weight_maps_the_ends_and_the_defaults(shares, weight):
    assert cpu.shares_to_weight(shares) == weight


def test_shares_to_weight_follows_the_published_formula_in_the_middle():
    for shares in (3, 100, 512, 1000, 5000, 100000, 262143):
        log = math.log2(shares)
        expected = math.ceil(10 ** ((log * log + 125 * log) / 612 - 7 / 34))
        assert cpu.shares_to_weight(shares) == expected


def test_shares_to_weight_is_monotonic_and_reaches_every_weight():
    weights = [cpu.shares_to_weight(s) for s in range(cpu.SHARES_MIN, cpu.SHARES_MAX + 1)]
    assert all(a <= b for a, b in zip(weights, weights[1:]))
    assert set(weights) == set(range(cpu.WEIGHT_MIN, cpu.WEIGHT_MAX + 1))


def test_weight_to_shares_is_the_largest_shares_of_that_weight():
    for weight in range(cpu.WEIGHT_MIN, cpu.WEIGHT_MAX + 1):
        shares = cpu.weight_to_shares(weight)
        assert cpu.shares_to_weight(shares) == weight
        assert shares == cpu.SHARES_MAX or cpu.shares_to_weight(shares + 1) > weight


def test_default_weight_reads_as_default_shares():
    assert cpu.weight_to_shares(100) == 1024
    assert cpu.shares_kept(100, None) == 1024


def test_every_shares_value_reads_back_as_v1_kept_it():
    for shares in ALL_SHARES:
        assert cpu.shares_kept(cpu.shares_to_weight(shares), shares) == v1_kept(shares), shares
    for shares in (262145, 10**6, 2**64 - 1):
        assert cpu.shares_kept(cpu.shares_to_weight(shares), shares) == cpu.SHARES_MAX


def test_a_weight_changed_behind_our_back_reads_as_its_inverse():
    other = cpu.shares_to_weight(512) + 7
    assert cpu.shares_kept(other, 512) == cpu.weight_to_shares(other) != 512


def test_set_shares_writes_the_weight_and_refuses_negatives(tmp_path):
    (tmp_path / cpu.CPU_WEIGHT).write_text("100\n")
    cpu.set_shares(tmp_path, 512)
    assert (tmp_path / cpu.CPU_WEIGHT).read_text() == str(cpu.shares_to_weight(512))
    assert cpu.get_weight(tmp_path) == cpu.shares_to_weight(512)
    with pytest.raises(CgroupError, match="^Failed setting cpu shares: -1 is negative"):
        cpu.set_shares(tmp_path, -1)


def test_set_shares_on_a_group_without_cpu_weight_names_the_errno(tmp_path):
    with pytest.raises(CgroupError, match="^Failed setting cpu shares: No such file"):
        cpu.set_shares(tmp_path, 512)
