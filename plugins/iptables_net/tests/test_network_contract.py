"""The framework's network contract, run against the iptables driver on the real kernel."""

from warden_iptables_net import kernel
from warden_iptables_net.driver import IptablesDriver

from warden_framework.testing.network_contract import NetworkContract


class TestIptablesNetworkContract(NetworkContract):
    driver_class = IptablesDriver
    kernel_module = kernel

    def recording_results(self, prefix, other_id):
        return {"iptables.chains": [f"{prefix}-i-{other_id}", f"{prefix}-i-{other_id}-log"],
                "link_names": [f"w-{other_id}-0", f"w-{other_id}-2"]}
