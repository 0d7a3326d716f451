"""The test kit's ServerProcess (testing/process.py) removes the host-wide state of a server
that set up the host and then failed, even though it cannot be started again to clean up."""

from __future__ import annotations

import pytest

from warden_framework.testing import leaks
from warden_framework.testing.process import ServerProcess

from .conftest import _missing, server_config


def test_a_server_failing_after_host_setup_leaves_no_chains_behind(tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    # The pidfile is taken after setup_host (chains made) and fails: below a regular file.
    config = server_config(tmp_path, drivers={"network": "iptables"},
                           server={"pidfile": str(not_a_directory / "warden.pid")})
    prefix = config["server"]["name_prefix"]
    srv = ServerProcess(config, tmp_path)
    before = leaks.inventory()
    with pytest.raises(RuntimeError, match="did not start"):
        srv.start()
    ours = {chain for chain in leaks.inventory()["iptables chains"] if prefix in chain}
    assert ours, f"the failed server set up no chains of {prefix}: the test proves nothing"
    with pytest.raises(RuntimeError, match="did not start"):
        srv.stop_and_clean()  # the restart fails the same way; the chains go all the same
    assert leaks.leftovers(before, leaks.inventory()) == {}
