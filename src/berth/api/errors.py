"""The one place where an error kind becomes an HTTP status and a ``{"message": ...}`` body."""

from __future__ import annotations

import json

from berth import errors

_STATUS: tuple[tuple[type[errors.BerthError], int], ...] = (
    (errors.InvalidParameter, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.NotModified, 304),
    (errors.NotSupported, 501),
    (errors.Unavailable, 503),
    (errors.System, 500),
)


def status_for(exc: BaseException) -> int:
    """HTTP status for an exception: its kind's status, 500 for anything unclassified."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(message: str) -> bytes:
    return json.dumps({"message": message}).encode() + b"\n"
