"""Warden-compatible container server: the core.

Plugins import only `hookimpl` from here; nothing heavy is imported at package import.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("warden")
