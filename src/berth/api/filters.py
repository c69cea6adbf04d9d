"""The ``filters`` query parameter: ``{"key": {"value": true}}`` (current) or ``{"key": ["value"]}``."""

from __future__ import annotations

import json
from collections.abc import Iterable

from berth.errors import InvalidParameter

Filters = dict[str, list[str]]


def parse_filters(text: str, allowed: Iterable[str]) -> Filters:
    """Parse and validate; an unknown key is dockerd's 400 "invalid filter 'key'"."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidParameter(f"invalid filter: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidParameter("invalid filter: expected a JSON object")
    allowed_set = set(allowed)
    out: Filters = {}
    for key, value in raw.items():
        if key not in allowed_set:
            raise InvalidParameter(f"invalid filter '{key}'")
        if isinstance(value, dict):
            out[key] = [str(k) for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            raise InvalidParameter(f"invalid filter '{key}': expected a list or an object")
    return out
