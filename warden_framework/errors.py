"""Error types. A WardenError's text goes to the client verbatim; the others stop start-up."""


class WardenError(Exception):
    """A request failed; the message is sent to the client as ErrorResponse.message."""

    def __init__(self, message: str = "unknown error") -> None:
        super().__init__(message or "unknown error")

    @property
    def message(self) -> str:
        return str(self)


class DriverError(WardenError):
    """A driver could not do its part of a request."""


class ConfigError(Exception):
    """The configuration file is invalid; the text names the key and the problem."""


class DriverUnavailable(Exception):
    """A configured driver cannot run on this host; the text names what is missing."""
