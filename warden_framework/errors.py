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


class ContainerNotFound(WardenError):
    """No live container has the handle. Its text is Warden's; a front end with typed errors
    (Garden's ContainerNotFoundError) reads `handle`."""

    def __init__(self, handle: str) -> None:
        super().__init__("unknown handle")
        self.handle = handle


class ProcessNotFound(WardenError):
    """No job of the container has the process ID (Garden's ProcessNotFoundError)."""

    def __init__(self, process_id: str) -> None:
        super().__init__(f"unknown process: {process_id}")
        self.process_id = process_id
