"""``.dockerignore`` with Docker's rules: one pattern a line, ``#`` comments, a leading ``!`` re-includes,
paths cleaned and made relative to the context; ``*`` and ``?`` do not cross ``/``, ``**`` crosses
any number of directories, ``\\`` escapes; a pattern that matches a directory matches everything
under it; the last pattern that matches a path decides."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from berth.errors import InvalidParameter

MAX_PATTERNS = 10000


def _regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(r"\\")
        elif ch == "[":
            end = pattern.find("]", i + 1 if i < n and pattern[i] in "!^" else i)
            if end < 0:
                raise InvalidParameter(f"syntax error in .dockerignore pattern {pattern!r}: unclosed '['")
            body = pattern[i:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]
    depth: int  # how many path components the pattern has


class Matcher:
    def __init__(self, patterns: list[str]) -> None:
        if len(patterns) > MAX_PATTERNS:
            raise InvalidParameter(f".dockerignore has more than {MAX_PATTERNS} patterns")
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            exclusion = p.startswith("!")
            if exclusion:
                p = p[1:]
                if not p:
                    raise InvalidParameter('illegal exclusion pattern: "!"')
            p = posixpath.normpath(p)
            self.patterns.append(_Pattern(p, exclusion, _regex(p), len(p.split("/"))))

    @property
    def exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (relative to the context, ``/``-separated) is left out of the build."""
        path = posixpath.normpath(path)
        if path in (".", ""):
            return False  # the context itself is never excluded
        parent = posixpath.dirname(path)
        parent_dirs = parent.split("/") if parent else []
        matched = False
        for p in self.patterns:
            hit = bool(p.regex.match(path))
            if not hit and parent and p.depth <= len(parent_dirs):
                hit = bool(p.regex.match("/".join(parent_dirs[:p.depth])))
            if hit:
                matched = not p.exclusion
        return matched


def read(text: str) -> Matcher:
    """The patterns of a ``.dockerignore`` file, as the classic builder reads them."""
    patterns = []
    for line in text.splitlines():
        p = line.strip()
        if not p or p.startswith("#"):
            continue
        invert = p.startswith("!")
        if invert:
            p = p[1:].strip()
        if p:
            p = posixpath.normpath(p)
            if len(p) > 1 and p.startswith("/"):
                p = p.lstrip("/") or "/"
        patterns.append("!" + p if invert else p)
    return Matcher(patterns)
