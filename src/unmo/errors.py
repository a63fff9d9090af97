"""One small hierarchy for every error unmo raises on purpose (after msgspec and asyncpg)."""


class UnmoError(Exception):
    """Base of unmo's own errors."""


class ValidationError(UnmoError, ValueError):
    """Input that does not follow the spec; the message names the field and the value."""


class ConfigError(UnmoError, ValueError):
    """A setting or command-line flag that cannot be used."""


class NotFoundError(UnmoError, LookupError):
    """A named object (app, install, customer) does not exist."""


class OverloadedError(UnmoError):
    """The server cannot take this request now; the client should retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseUnavailableError(OverloadedError):
    """The database cannot be reached or refused the commit; nothing of the request was stored."""


def cut(value: object, limit: int = 40) -> str:
    """repr() of a value cut to ``limit`` characters, for error messages (asyncpg's habit)."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
