"""The iptables network driver: a table of contents over network (chains + links), rules
(NetIn/NetOut validation) and shaping (tc). Chains carry `server.name_prefix`; links are
`w-<id>-0/1/2`; nothing else on the host is touched."""

from __future__ import annotations

import contextlib
from typing import Iterator

from warden_framework import hookimpl
from warden_framework.drivers import NetworkDriver
from warden_framework.errors import DriverError, DriverUnavailable, WardenError

from . import chains, kernel, network, rules, shaping


@contextlib.contextmanager
def _driver_errors(action: str) -> Iterator[None]:
    """Validation failures go to the client verbatim; kernel failures say what failed."""
    try:
        yield
    except rules.RuleError as exc:
        raise WardenError(str(exc)) from exc
    except (kernel.KernelError, ValueError, OSError) as exc:
        raise DriverError(f"{action}: {exc}") from exc


class IptablesDriver(NetworkDriver):
    """The network driver `iptables`. Its hooks, all its own:

    - setup_host, teardown_host: the shared chains and ip_forward (network.py);
    - setup_net, teardown_net, recover: a container's veth pair and chains, made, removed,
      and rebuilt with its recorded rules after a restart (network.py, veth.py);
    - net_in, net_out: DNAT and filter rules, validated as Warden does (rules.py);
    - limit_bandwidth, info: tbf shaping and what it is set to (shaping.py); info also
      counts the bytes through the container's veth (network_stat, Garden's NetworkStat).

    Every kernel call is in kernel.py.
    """

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.prefix = settings.server.name_prefix
        self._counters = kernel.LinkCounters()

    @classmethod
    def check_host(cls, settings) -> None:
        reason = kernel.host_unavailable_reason()
        if reason:
            raise DriverUnavailable(reason)

    @hookimpl
    def setup_host(self, settings):
        net = settings.network
        with _driver_errors("set up host chains"):
            network.setup_host(self.prefix, net.effective_pool(), list(net.allow_networks),
                               list(net.deny_networks), net.allow_host_access)

    @hookimpl
    def teardown_host(self, settings):
        with _driver_errors("tear down host chains"):
            for container_id in network.list_container_ids(self.prefix):
                network.teardown_container(self.prefix, container_id)
            network.teardown_host(self.prefix)

    @hookimpl
    def setup_net(self, container, settings):
        with _driver_errors(f"set up network of {container.id}"):
            return network.setup_container(self.prefix, container.id,
                                           container.records["exec"]["pid"], container.network,
                                           settings.network.mtu)

    @hookimpl
    def teardown_net(self, container, record):
        self._counters.forget(chains.host_iface(container.id))
        with _driver_errors(f"tear down network of {container.id}"):
            network.teardown_container(self.prefix, container.id,
                                       (record or {}).get("netns_pid"))

    @hookimpl
    def net_in(self, container, host_port, container_port):
        with _driver_errors(f"net_in of {container.id}"):
            rules.check_port(host_port, "host port")
            rules.check_port(container_port, "container port")
            network.net_in(self.prefix, container.id, container.container_ip, host_port, container_port)
        return {"host_port": host_port, "container_port": container_port}

    @hookimpl
    def net_out(self, container, rule):
        with _driver_errors(f"net_out of {container.id}"):
            parsed = rules.parse_net_out(**rule)
            network.net_out(self.prefix, container.id, parsed)
        return parsed.to_resource()

    @hookimpl
    def limit_bandwidth(self, container, rate, burst):
        with _driver_errors(f"limit bandwidth of {container.id}"):
            if rate is not None and burst is not None:
                shaping.limit_bandwidth(container.id, rate, burst)
            in_rate, in_burst, _, _ = shaping.read_bandwidth(container.id)
        return in_rate, in_burst

    @hookimpl
    def info(self, container):
        if "network" not in container.records:
            return None
        if not shaping.is_shaped(container.id):
            # No tbf: spare every Run's info a qdisc dump, which waits for the rtnl lock
            # that other containers' veth and netns deletions hold.
            in_rate = in_burst = out_rate = out_burst = shaping.NO_LIMIT
        else:
            with _driver_errors(f"read bandwidth of {container.id}"):
                in_rate, in_burst, out_rate, out_burst = shaping.read_bandwidth(container.id)
        fields = {"bandwidth_stat": {"in_rate": in_rate, "in_burst": in_burst,
                                     "out_rate": out_rate, "out_burst": out_burst}}
        counters = self._counters.read(chains.host_iface(container.id))
        if counters is not None:
            # The container's view: what the host end sends, the container receives.
            host_rx, host_tx = counters
            fields["network_stat"] = {"rx_bytes": host_tx, "tx_bytes": host_rx}
        return fields

    @hookimpl
    def recover(self, container, settings):
        """The veth lives as long as the container; chains are rebuilt and every recorded
        net_in / net_out rule applied again, so rules deleted behind our back come back."""
        if "network" not in container.records:
            return
        with _driver_errors(f"recover network of {container.id}"):
            if kernel.link_mtu(f"w-{container.id}-0") is None:
                raise DriverError(f"host interface w-{container.id}-0 of {container.id} is gone")
            network.recover_chains(self.prefix, container.id)
            for host_port, container_port in container.net_in_rules:
                network.net_in(self.prefix, container.id, container.container_ip, host_port,
                               container_port)
            for resource in container.net_out_rules:  # each went to the top: same order again
                network.net_out(self.prefix, container.id, rules.NetOutRule.from_resource(resource))
