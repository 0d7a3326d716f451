"""What every driver shares: the fixed constructor and the start-up host check."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..config import Settings


class Driver(abc.ABC):
    """Base of every driver. The loader calls `check_host(settings)` then `cls(settings)`.

    Subclasses mark each hook method with `warden_framework.hookimpl`; an unmarked override is a
    start-up error (pluggy would silently skip it). Drivers keep no per-container state that
    teardown needs: everything comes from the step record or from names derived from the id.
    """

    subsystem: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    @abc.abstractmethod
    def check_host(cls, settings: Settings) -> None:
        """Raise DriverUnavailable naming what this host lacks (and how to get it)."""
