"""The asyncio daemon: unix-socket listener, request dispatch, grace timers, drain, health."""
