"""Garden's error objects: a non-2xx status and {"Type", "Message", "Handle", "ProcessID"};
the Go client rebuilds ContainerNotFoundError from Handle and ProcessNotFoundError from
ProcessID, and everything else from Message (garden-api.md §2)."""

from __future__ import annotations

from warden_framework.errors import ContainerNotFound, ProcessNotFound

from .http import HTTPError


class ServiceUnavailable(Exception):
    """The server cannot take the request now (draining)."""


def error_object(exc: Exception) -> tuple[int, dict]:
    """(HTTP status, the error object) for a failed request."""
    body = {"Type": "", "Message": str(exc) or type(exc).__name__, "Handle": "", "ProcessID": ""}
    if isinstance(exc, ContainerNotFound):
        body.update(Type="ContainerNotFoundError", Message=f"unknown handle: {exc.handle}",
                    Handle=exc.handle)
        return 404, body
    if isinstance(exc, ProcessNotFound):
        body.update(Type="ProcessNotFoundError", ProcessID=exc.process_id)
        return 404, body
    if isinstance(exc, ServiceUnavailable):
        body.update(Type="ServiceUnavailableError")
        return 500, body
    if isinstance(exc, HTTPError):
        return exc.status, body
    return 500, body
