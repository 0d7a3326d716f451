"""Python clients of a Warden server (sync and asyncio) and the `warden` command (cli.py)."""

from warden_framework.client.aio import AsyncClient
from warden_framework.client.connection import DEFAULT_SOCKET, Client
from warden_framework.client.errors import ServerError
from warden_framework.client.requests import build_request

__all__ = ["DEFAULT_SOCKET", "AsyncClient", "Client", "ServerError", "build_request"]
