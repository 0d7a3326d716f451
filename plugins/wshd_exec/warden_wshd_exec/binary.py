"""Where the wshd binary is when the config names none (server.wshd_path: null): beside
this package (`bin/wshd`, put there by the wheel's build), else in the checkout this package
runs from (an editable install: native/wshd/wshd, built by scripts/bootstrap.sh)."""

from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).with_name("bin") / "wshd"
CHECKOUT = Path(__file__).resolve().parents[3] / "native" / "wshd" / "wshd"


def default_binary() -> Path:
    return PACKAGED if PACKAGED.exists() else CHECKOUT


def configured_binary(wshd_path: str | None) -> Path:
    return Path(wshd_path) if wshd_path else default_binary()
