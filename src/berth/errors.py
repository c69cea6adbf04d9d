"""The kinds of error berth raises, modelled on moby's errdefs.

Domain code raises one of these kinds; exactly one function (``berth.api.errors.status_for``) maps a
kind to an HTTP status, so no handler ever picks a status code itself. Anything that is not a
``BerthError`` reaching the API layer is a bug: it becomes a 500 and is logged with its traceback.

    BerthError
    ├── InvalidParameter   400  the request is malformed or a value is out of range
    ├── Unauthorized       401  the caller is not authenticated
    ├── Forbidden          403  the caller may not do this
    ├── NotFound           404  no such object (wording matters: docker-py reads "No such image")
    ├── Conflict           409  the object's state or name forbids this
    ├── NotModified        304  nothing to do (already started, already stopped)
    ├── NotSupported       501  berth does not do this (yet)
    ├── Unavailable        503  a dependency is not ready or has gone away
    └── System             500  the OS or a component failed; the message says which and why

Each carries a message and optionally the exception that caused it (``cause``).
"""

from __future__ import annotations


class BerthError(Exception):
    """Base of every error berth raises on purpose."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        return self.message


class InvalidParameter(BerthError):
    """The request or a configuration value is malformed."""


class Unauthorized(BerthError):
    """The caller is not authenticated."""


class Forbidden(BerthError):
    """The caller is authenticated but may not do this."""


class NotFound(BerthError):
    """The named object does not exist."""


class Conflict(BerthError):
    """The object's current state or name forbids the operation."""


class NotModified(BerthError):
    """The operation had nothing to do."""


class NotSupported(BerthError):
    """berth does not implement this."""





class Unavailable(BerthError):
    """A dependency is not ready or has gone away."""


class System(BerthError):
    """The operating system or a component failed."""
