import pytest

from warden_framework.config import load_settings, settings_from_dict
from warden_framework.errors import ConfigError


def test_defaults_match_warden():
    s = settings_from_dict({})
    assert s.server.unix_domain_path == "/tmp/warden.sock"
    assert s.server.container_grace_time == 300
    assert s.server.job_output_limit == 10485760
    assert s.network.pool_network == "10.254.0.0/24" and s.network.mtu == 1500
    assert s.user.pool_start_uid == 10000 and s.user.pool_size == 64
    assert s.health_check_server.port == 2345


def test_legacy_pool_keys_win():
    s = settings_from_dict({"network": {"pool_start_address": "10.254.0.0", "pool_size": 64}})
    assert str(s.network.effective_pool()) == "10.254.0.0/24"


@pytest.mark.parametrize("data,text", [
    ({"network": {"mtu": "big"}}, "network.mtu: expected an integer, got 'big'"),
    ({"network": {"pool_network": "nope"}}, "Invalid address/netmask (require: 1.2.3.4/5)"),
    ({"server": {"bogus": 1}}, "server.bogus: unknown key"),
    ({"server": {"container_rlimits": {"nofiles": 3}}}, "server.container_rlimits.nofiles: unknown rlimit"),
    ({"logging": {"level": "loud"}}, "logging.level: 'loud' is not one of"),
    ({"network": {"allow_networks": ["x"]}}, "network.allow_networks: 'x' is not an IPv4 network"),
])
def test_bad_config_names_key_and_problem(data, text):
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data)
    assert text in str(err.value)


def test_null_grace_time_disables(tmp_path):
    path = tmp_path / "w.yml"
    path.write_text("server:\n  container_grace_time: null\n  container_depot_path: depot\nhealth_server: {port: 1}\n")
    s = load_settings(path)
    assert s.server.container_grace_time is None
    assert s.server.container_depot_path == str(tmp_path / "depot")


def test_unreadable_yaml(tmp_path):
    path = tmp_path / "w.yml"
    path.write_text("server: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_settings(path)


def test_containment_keys_default_and_validate():
    s = settings_from_dict({})
    assert (s.server.container_pids_limit, s.server.max_connections) == (1024, 1024)
    assert settings_from_dict({"server": {"container_pids_limit": None}}).server.container_pids_limit is None
    with pytest.raises(ConfigError, match="server.container_pids_limit: must be >= 0"):
        settings_from_dict({"server": {"container_pids_limit": -1}})
    with pytest.raises(ConfigError, match="server.max_connections: must be >= 1"):
        settings_from_dict({"server": {"max_connections": 0}})
