"""API version prefixes (/v1.NN/...) and the supported range.

A request path may carry a version (``/v1.41/containers/json``) or not (``/containers/json``, which
means the newest). Outside [MIN_API_VERSION, API_VERSION] the request fails with dockerd's wording.
"""

from __future__ import annotations

import re

from berth import API_VERSION, MIN_API_VERSION
from berth.errors import InvalidParameter

_PREFIX = re.compile(r"^/v(\d+(?:\.\d+)?)(/.*)\Z")


def parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


MAX = parse_version(API_VERSION)
MIN = parse_version(MIN_API_VERSION)


def split_version(path: str) -> tuple[str | None, str]:
    """Split ``/v1.41/x`` into ("1.41", "/x"); a path with no version gives (None, path)."""
    if path.startswith("/v"):
        m = _PREFIX.match(path)
        if m:
            return m.group(1), m.group(2)
    return None, path


def check_version(version: str) -> None:
    """Raise InvalidParameter (400) when ``version`` is outside the supported range."""
    v = parse_version(version)
    if v > MAX:
        raise InvalidParameter(
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )
    if v < MIN:
        raise InvalidParameter(
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )


def at_least(version: str, minimum: str) -> bool:
    return parse_version(version) >= parse_version(minimum)
