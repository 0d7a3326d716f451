"""Typed fields of Garden request bodies. The Go client sends uint64s, strings, bools, arrays
and objects, and omits zero values (garden-api.md §6); a value of another JSON type is a 400
naming the field, as the Go server answers a body it cannot decode."""

from __future__ import annotations

from typing import Any

from .http import HTTPError


def _wrong(name: str, wanted: str, value: Any) -> HTTPError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return HTTPError(400, f"{name}: {wanted} is needed, got {shown}")


def obj(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(name, "a JSON object", value)
    return value


def array(value: Any, name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong(name, "a JSON array", value)
    return value


def uint(value: Any, name: str, bits: int = 64) -> int:
    """An absent field is Go's zero value, 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise _wrong(name, f"an unsigned {bits}-bit integer", value)
    return value


def string(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    return value


def boolean(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _wrong(name, "true or false", value)
    return value


def string_map(value: Any, name: str) -> dict[str, str]:
    """Go's map[string]string: every value a string."""
    mapping = obj(value, name)
    for key, item in mapping.items():
        string(item, f"{name}.{key}")
    return dict(mapping)
