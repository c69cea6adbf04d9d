"""Image references as Docker reads them.

    busybox                    → docker.io/library/busybox:latest
    user/app:1.0               → docker.io/user/app:1.0
    host:5000/a/b:t            → host:5000/a/b:t
    name@sha256:<64 hex>       → a digest reference
The "familiar" form drops docker.io/ and library/, as the docker CLI shows names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from berth.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_PREFIX = "library/"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"^[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}\Z")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"(?::[0-9]+)?\Z|^\[[0-9a-fA-F:]+\](?::[0-9]+)?\Z")
ID_HEX = re.compile(r"^(?:sha256:)?([a-f0-9]{1,64})\Z")


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        if self.domain == DEFAULT_DOMAIN:
            return self.path[len(OFFICIAL_PREFIX):] if self.path.startswith(OFFICIAL_PREFIX) else self.path
        return self.name

    def __str__(self) -> str:
        """The full normalized form, as stored: docker.io/library/busybox:latest."""
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def familiar(self) -> str:
        out = self.familiar_name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def parse(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalize; raises InvalidParameter naming the reference when it is not valid."""
    s = text
    if not s:
        raise InvalidParameter("invalid reference format: empty")
    if s != s.strip() or any(c.isspace() or ord(c) < 32 for c in s):
        raise InvalidParameter(f"invalid reference format: {text!r}")
    digest = None
    if "@" in s:
        s, digest = s.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidParameter(f"invalid reference format: {text!r}: bad digest")
    tag = None
    slash = s.rfind("/")
    colon = s.rfind(":")
    if colon > slash:
        s, tag = s[:colon], s[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidParameter(f"invalid reference format: {text!r}: bad tag")
    first, sep, rest = s.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
        if not _DOMAIN.match(domain):
            raise InvalidParameter(f"invalid reference format: {text!r}: bad registry {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, s
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if not path or any(not _COMPONENT.match(c) for c in path.split("/")):
        if path != path.lower():
            raise InvalidParameter(f"invalid reference format: repository name ({path}) must be lowercase")
        raise InvalidParameter(f"invalid reference format: {text!r}")
    if len(f"{domain}/{path}") > 255:
        raise InvalidParameter(f"invalid reference format: {text!r}: repository name too long")
    if tag is None and digest is None and default_tag:
        tag = "latest"
    return Reference(domain, path, tag, digest)


def looks_like_id(text: str) -> str | None:
    """The hex of an image ID or ID prefix (``sha256:`` optional), or None."""
    m = ID_HEX.match(text.strip())
    return m.group(1) if m else None
