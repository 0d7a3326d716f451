"""The framework's exec contract, run against the wshd driver on the real kernel."""

import pytest

# Before the import: the contract's asserts then report their values, as a test module's do.
pytest.register_assert_rewrite("warden_framework.testing.exec_contract")

from warden_wshd_exec.driver import WshdDriver

from warden_framework.testing.exec_contract import ExecContract


class TestWshdExecContract(ExecContract):
    driver_class = WshdDriver

    @pytest.fixture(scope="class")
    @classmethod
    def exec_settings_data(cls, wshd_binary):
        return {"server": {"wshd_path": str(wshd_binary)}}
