"""What every contract suite of the kit shares (contract.py, limits_contract.py,
network_contract.py, exec_contract.py, disk_contract.py): the integration marker, the driver
class a plugin's subclass names, and skipping, with the reason printed, on a host the driver
refuses."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ..config import Settings
from ..errors import DriverUnavailable


class DriverContract:
    pytestmark = [pytest.mark.integration]
    driver_class: ClassVar[type]

    def skip_reason(self, settings: Settings) -> str | None:
        """Why this host cannot run the driver; by default its check_host message."""
        try:
            self.driver_class.check_host(settings)
        except DriverUnavailable as exc:
            return f"{self.driver_class.__name__}: {exc}"
        return None
