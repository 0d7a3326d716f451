"""Front ends are plugins over one core: configured by name, loaded from `warden.frontends`,
several serving one set of containers at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import pytest

from warden_framework.client import Client
from warden_framework.config import settings_from_dict
from warden_framework.errors import ConfigError
from warden_framework.frontends import FrontEnd, load_frontend_classes
from warden_framework.server.listener import WardenServer
from warden_framework.testing.fakes import FAKE_DRIVERS
from warden_framework.testing.server import fake_settings, running_server


class HandlesFrontEnd(FrontEnd):
    """A second protocol, as small as one can be: a unix socket that answers each
    connection with the handles the core holds, one per line, then closes."""

    name = "handles"

    @classmethod
    def check_options(cls, options):
        if not isinstance(options.get("path"), str):
            raise ConfigError("frontends.handles.path: expected a socket path")

    async def start(self):
        self.server = await asyncio.start_unix_server(self._answer, path=self.options["path"])

    async def _answer(self, reader, writer):
        handles = self.runtime.orchestrator.handles()
        writer.write("".join(f"{h}\n" for h in handles).encode())
        await writer.drain()
        writer.close()

    async def drain(self):
        self.server.close()
        await self.server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.options["path"])


def ask_handles(path) -> list[str]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode().split()


def test_without_a_frontends_section_only_the_warden_protocol_serves():
    settings = settings_from_dict({})
    assert settings.frontends == {"warden": {}}
    assert load_frontend_classes(settings) == {"warden": WardenServer}


def test_an_unknown_front_end_is_a_start_up_error_naming_the_installed_ones():
    settings = settings_from_dict({"frontends": {"gopher": {}}})
    with pytest.raises(ConfigError, match=r"no front end named 'gopher'.*installed: .*warden"):
        load_frontend_classes(settings)


@pytest.mark.parametrize("raw, text", [
    ({}, "expected a mapping of front end names"),
    ([], "expected a mapping of front end names"),
    ({"warden": [1]}, r"frontends.warden: expected a mapping of options"),
])
def test_a_bad_frontends_section_names_the_key(raw, text):
    with pytest.raises(ConfigError, match=text):
        settings_from_dict({"frontends": raw})


def test_the_warden_front_end_takes_no_options():
    settings = settings_from_dict({"frontends": {"warden": {"port": 1}}})
    with pytest.raises(ConfigError, match=r"frontends.warden.port: unknown option"):
        load_frontend_classes(settings)


def test_two_front_ends_serve_one_set_of_containers(tmp_path):
    path = tmp_path / "handles.sock"
    settings = fake_settings(tmp_path, frontends={"warden": {}, "handles": {"path": str(path)}})
    classes = {"warden": WardenServer, "handles": HandlesFrontEnd}
    with running_server(settings, FAKE_DRIVERS, frontends=classes):
        assert ask_handles(path) == []
        with Client(settings.server.unix_domain_path) as c:
            made = c.create(handle="shared").handle.decode()
            assert ask_handles(path) == [made]
            c.destroy(handle=made)
        assert ask_handles(path) == []
    assert not path.exists()  # the second front end was drained with the first
