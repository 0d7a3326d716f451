"""Bandwidth limits of a container (LimitBandwidth, Info's bandwidth_stat), with tc tbf.

Traffic into the container is shaped by a root tbf on the host veth; traffic out of it
is redirected from the host veth's ingress to the ifb, whose root tbf shapes it
(facts §5.9, §10.5). Kernel work goes through `kernel`.
"""

from __future__ import annotations

from warden_iptables_net import chains, kernel

NO_LIMIT = 0xFFFFFFFF  # what Info reports without a qdisc (facts §5.1)
LATENCY = "25ms"
MAX_RATE = 0xFFFFFFFF  # tbf's 32-bit rate field, in bytes/s
MAX_BUFFER = 0xFFFFFFFF  # tbf's 32-bit buffer field, in scheduler ticks


def limit_bandwidth(container_id: str, rate: int, burst: int) -> None:
    """Limit both directions to `rate` bytes/s with bursts of `burst` bytes.

    Replaces earlier limits. Creates the ifb if it is missing.
    """
    chains.check_id(container_id)
    check_limits(rate, burst, kernel.psched_ticks_per_usec())
    host, ifb = chains.host_iface(container_id), chains.ifb_iface(container_id)
    mtu = kernel.link_mtu(host)
    if mtu is None:
        raise kernel.KernelError(f"netlink: no link named {host}")
    kernel.ensure_ifb(ifb, mtu)
    kernel.replace_root_tbf(host, rate, burst, LATENCY)
    kernel.replace_root_tbf(ifb, rate, burst, LATENCY)
    kernel.redirect_ingress(host, ifb)


def is_shaped(container_id: str) -> bool:
    """True once limit_bandwidth made the container's ifb: without it there is no tbf.

    A cheap test (no netlink dump, no rtnl lock) for Info, which every Run answers with.
    """
    chains.check_id(container_id)
    return kernel.link_exists(chains.ifb_iface(container_id))


def read_bandwidth(container_id: str) -> tuple[int, int, int, int]:
    """(in_rate, in_burst, out_rate, out_burst) read back from the kernel.

    Rates in bytes/s, bursts in bytes; NO_LIMIT for a direction without a tbf.
    """
    chains.check_id(container_id)
    ticks = kernel.psched_ticks_per_usec()
    found_in = kernel.root_tbf(chains.host_iface(container_id))
    found_out = kernel.root_tbf(chains.ifb_iface(container_id))
    return (*_rate_and_burst(found_in, ticks), *_rate_and_burst(found_out, ticks))


def check_limits(rate: int, burst: int, ticks_per_usec: float) -> None:
    """Raise ValueError unless tbf can hold this rate and burst."""
    if not 1 <= rate <= MAX_RATE:
        raise ValueError(f"bandwidth rate must be 1..{MAX_RATE} bytes/s, got {rate}")
    if burst < 1:
        raise ValueError(f"bandwidth burst must be at least 1 byte, got {burst}")
    if burst_ticks(rate, burst, ticks_per_usec) > MAX_BUFFER:
        raise ValueError(f"bandwidth burst {burst} is too large for rate {rate}")


def burst_ticks(rate: int, burst: int, ticks_per_usec: float) -> int:
    """The tbf buffer for `burst`: its transmit time at `rate`, in ticks (as tc computes)."""
    return int(int(1_000_000 * burst / rate) * ticks_per_usec)


def burst_from_buffer(buffer_ticks: int, rate: int, ticks_per_usec: float) -> int:
    """Bytes sent at `rate` during `buffer_ticks`: the burst that tbf buffer stands for."""
    return round(buffer_ticks / ticks_per_usec * rate / 1_000_000)


def _rate_and_burst(found: tuple[int, int] | None, ticks: float) -> tuple[int, int]:
    if found is None:
        return NO_LIMIT, NO_LIMIT
    rate, buffer = found
    return rate, burst_from_buffer(buffer, rate, ticks)
