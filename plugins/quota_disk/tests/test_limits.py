"""LimitDisk arithmetic: Warden's quota_spec examples (block size stubbed to 4096, facts
§12.9), the 1 KiB block size the drivers use, precedence, range checks, response fields."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden_framework.errors import WardenError
from warden_quota_disk.limits import (
    BLOCK_SIZE, MAX_VALUE, REQUEST_FIELDS, QuotaLimits, bytes_to_blocks, merge_limits,
    response_fields,
)

SPEC_BLOCK = 4096  # quota_spec stubs the block size to 4096
CURRENT = QuotaLimits(block_soft=7, block_hard=9, inode_soft=11, inode_hard=13)


def spec_merge(request: dict, current: QuotaLimits = QuotaLimits()) -> dict:
    return response_fields(merge_limits(current, request, SPEC_BLOCK), SPEC_BLOCK)


# ---- quota_spec: block_soft

def test_byte_soft_4000_sets_block_soft_1_and_reads_back_4096_bytes():
    fields = spec_merge({"byte_soft": 4000})
    assert (fields["block_soft"], fields["byte_soft"]) == (1, 4096)


def test_block_soft_1_sets_block_soft():
    fields = spec_merge({"block_soft": 1})
    assert (fields["block_soft"], fields["byte_soft"]) == (1, 4096)


def test_block_soft_wins_over_byte_soft():
    assert spec_merge({"byte_soft": 3 * 4096, "block_soft": 1})["block_soft"] == 1


def test_soft_limit_not_in_request_is_kept():
    fields = spec_merge({"block_hard": 2}, CURRENT)
    assert fields["block_soft"] == 7 and fields["byte_soft"] == 7 * 4096


# ---- quota_spec: block_hard through each alias

@pytest.mark.parametrize("field", ["byte_limit", "byte", "byte_hard"])
def test_byte_alias_4000_sets_block_hard_1(field):
    fields = spec_merge({field: 4000})
    assert fields["block_hard"] == fields["block_limit"] == fields["block"] == 1
    assert fields["byte_hard"] == fields["byte_limit"] == fields["byte"] == 4096


@pytest.mark.parametrize("field", ["block_limit", "block", "block_hard"])
def test_block_alias_1_sets_block_hard_1(field):
    fields = spec_merge({field: 1})
    assert (fields["block_hard"], fields["byte_limit"]) == (1, 4096)


@pytest.mark.parametrize("byte_field", ["byte_limit", "byte", "byte_hard"])
@pytest.mark.parametrize("block_field", ["block_limit", "block", "block_hard"])
def test_block_alias_wins_over_byte_alias(byte_field, block_field):
    assert spec_merge({byte_field: 10 * 4096, block_field: 3})["block_hard"] == 3


def test_hard_limit_not_in_request_is_kept():
    fields = spec_merge({"block_soft": 1}, CURRENT)
    assert fields["block_hard"] == 9 and fields["byte_limit"] == 9 * 4096


# ---- quota_spec: inodes

def test_inode_soft_1024():
    assert spec_merge({"inode_soft": 1024})["inode_soft"] == 1024


@pytest.mark.parametrize("field", ["inode_limit", "inode", "inode_hard"])
def test_inode_alias_sets_inode_hard(field):
    fields = spec_merge({field: 1024})
    assert fields["inode_hard"] == fields["inode_limit"] == fields["inode"] == 1024


def test_inode_limits_not_in_request_are_kept():
    fields = spec_merge({"block_limit": 1}, CURRENT)
    assert (fields["inode_soft"], fields["inode_hard"]) == (11, 13)


# ---- precedence inside a group: later fields win (facts §5.8)

@pytest.mark.parametrize("request_, expected", [
    ({"byte_limit": 1024, "byte": 2048}, 2),
    ({"byte": 2048, "byte_hard": 3072}, 3),
    ({"block_limit": 1, "block": 2, "block_hard": 3}, 3),
    ({"block_limit": 1, "block": 2}, 2),
])
def test_later_alias_wins(request_, expected):
    assert merge_limits(QuotaLimits(), request_).block_hard == expected


@pytest.mark.parametrize("request_, expected", [
    ({"inode_limit": 1, "inode": 2}, 2), ({"inode": 2, "inode_hard": 3}, 3),
])
def test_later_inode_alias_wins(request_, expected):
    assert merge_limits(QuotaLimits(), request_).inode_hard == expected


# ---- the driver's 1 KiB blocks

@pytest.mark.parametrize("value, blocks", [(0, 0), (1, 1), (1024, 1), (1025, 2), (2 * 2**20, 2048)])
def test_bytes_round_up_to_1k_blocks(value, blocks):
    assert bytes_to_blocks(value) == blocks
    assert merge_limits(QuotaLimits(), {"byte_limit": value}).block_hard == blocks


def test_empty_request_keeps_everything():
    assert merge_limits(CURRENT, {}) == CURRENT


def test_zero_means_unlimited_and_is_accepted():
    assert merge_limits(CURRENT, {"block_limit": 0, "inode_limit": 0}) == QuotaLimits(7, 0, 11, 0)


def test_response_has_the_twelve_fields():
    fields = response_fields(QuotaLimits(block_soft=1, block_hard=2, inode_soft=3, inode_hard=4))
    assert fields == {
        "block_limit": 2, "block": 2, "block_soft": 1, "block_hard": 2,
        "byte_limit": 2048, "byte": 2048, "byte_soft": 1024, "byte_hard": 2048,
        "inode_limit": 4, "inode": 4, "inode_soft": 3, "inode_hard": 4,
    }
    assert set(fields) == set(REQUEST_FIELDS)


# ---- bad input

@pytest.mark.parametrize("request_, message", [
    ({"byte_limit": 2**64 - 1}, "byte_limit 18446744073709551615 is too large"),
    ({"inode": MAX_VALUE + 1}, "inode 9223372036854775809 is too large"),
    ({"block_hard": MAX_VALUE // BLOCK_SIZE + 1}, "block_hard 9007199254740993 is too large"),
    ({"block_soft": -1}, "block_soft -1 is negative"),
    ({"byte": "12"}, "byte must be an integer"),
    ({"byte": True}, "byte must be an integer"),
    ({"bytes": 12}, "unknown field 'bytes'"),
])
def test_bad_values_are_refused_naming_the_field(request_, message):
    with pytest.raises(WardenError, match=message):
        merge_limits(CURRENT, request_)


def test_largest_values_fit_the_response():
    fields = response_fields(merge_limits(QuotaLimits(), {"byte_limit": MAX_VALUE, "inode": MAX_VALUE}))
    assert fields["byte_limit"] == MAX_VALUE and fields["inode"] == MAX_VALUE
    assert all(v < 2**64 for v in fields.values())


@given(st.dictionaries(st.sampled_from(REQUEST_FIELDS), st.integers(0, 2**40)))
def test_read_back_of_any_request_agrees_with_itself(request_):
    fields = response_fields(merge_limits(CURRENT, request_))
    assert fields["byte_limit"] == fields["block_limit"] * BLOCK_SIZE
    assert fields["block_limit"] == fields["block"] == fields["block_hard"]
    assert fields["inode_limit"] == fields["inode"] == fields["inode_hard"]
    last_block = [request_[f] for f in ("block_limit", "block", "block_hard") if f in request_]
    if last_block:
        assert fields["block_hard"] == last_block[-1]
