"""The cpu controller: Warden's cpu shares (v1's cpu.shares) as cgroup v2's cpu.weight.

Conversion as runc and crun do it since 2025 (opencontainers/cgroups PR #20, crun 1.23): a
quadratic in log2 space that maps the ends and the defaults onto each other, 2 -> 1,
1024 -> 100, 262144 -> 10000: weight = ceil(10 ** ((L*L + 125*L) / 612 - 7/34)), L = log2(shares).
The float expression is kept in the same order as theirs, so a weight matches theirs exactly.
"""

import math
from pathlib import Path

from . import kernel
from .errors import CgroupError

CPU_WEIGHT = "cpu.weight"

SHARES_MIN, SHARES_MAX = 2, 262144  # what v1's kernel keeps (MIN_SHARES, MAX_SHARES)
WEIGHT_MIN, WEIGHT_MAX = 1, 10000


def shares_to_weight(shares: int) -> int:
    """cpu.weight for `shares`; out-of-range shares clamp as v1's kernel clamps them.

    runc treats 0 as "unset"; Warden never did (v1 wrote it and read back 2), so 0 -> 1.
    """
    if shares <= SHARES_MIN:
        return WEIGHT_MIN
    if shares >= SHARES_MAX:
        return WEIGHT_MAX
    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return math.ceil(math.pow(10, exponent))


def weight_to_shares(weight: int) -> int:
    """The largest shares value whose weight is `weight` (100 -> 1024, the two defaults).

    The forward map sends about 30 shares values to one weight near the top, so this alone
    cannot give back any value a client set: `shares_kept` does that.
    """
    weight = min(max(weight, WEIGHT_MIN), WEIGHT_MAX)
    # Solve (L*L + 125*L) / 612 - 7/34 = log10(weight) for L, then step onto the exact ceiling.
    c = 612.0 * (math.log10(weight) + 7.0 / 34.0)
    shares = round(2 ** ((-125.0 + math.sqrt(125.0 * 125.0 + 4.0 * c)) / 2.0))
    while shares > SHARES_MIN and shares_to_weight(shares) > weight:
        shares -= 1
    while shares < SHARES_MAX and shares_to_weight(shares + 1) <= weight:
        shares += 1
    return shares


def shares_kept(weight: int, requested: int | None) -> int:
    """The shares to answer for the cpu.weight now in the kernel.

    `requested` is the value the client last set (the container's cpu_shares): while the
    kernel still holds its weight, the answer is that value as v1 would have kept it, so a
    client reads back what it set; otherwise (never set, or changed behind our back) it is
    the inverse conversion.
    """
    if requested is not None and shares_to_weight(requested) == weight:
        return min(max(requested, SHARES_MIN), SHARES_MAX)
    return weight_to_shares(weight)


def set_shares(group: Path, shares: int) -> None:
    """Write the cpu.weight for `shares`."""
    if shares < 0:
        raise CgroupError(f"Failed setting cpu shares: {shares} is negative")
    try:
        kernel.write_control(group / CPU_WEIGHT, str(shares_to_weight(shares)))
    except OSError as e:
        raise CgroupError(f"Failed setting cpu shares: {e.strerror}") from e


def get_weight(group: Path) -> int:
    """cpu.weight of the group (100 for a new one)."""
    try:
        return int(kernel.read_control(group / CPU_WEIGHT))
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting cpu shares: {e}") from e
