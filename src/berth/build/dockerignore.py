"""``.dockerignore`` with Docker's rules: one pattern a line, ``#`` comments, a leading ``!`` re-includes,
paths cleaned and made relative to the context; ``*`` and ``?`` do not cross ``/``, ``**`` crosses
any number of directories, ``\\`` escapes; a pattern that matches a directory matches everything
under it; the last pattern that matches a path decides."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from berth.errors import InvalidParameter

MAX_PATTERNS = 10000


MAX_PATTERN = 4096
# tokens: ("c", char) a character; ("?",) any but /; ("[", negated, ranges) a class (never /);
# ("*",) any run without /; ("**/",) nothing or any run that ends in / ; ("**",) anything (at the end)
Token = tuple


def _compile(pattern: str) -> list[Token]:
    """The pattern as tokens for a matcher that takes time linear in the path (Docker's Go regexp is
    linear; a backtracking regex of the same pattern is not: ``**/**/**/…/x`` took minutes)."""
    if len(pattern) > MAX_PATTERN:
        raise InvalidParameter(f".dockerignore pattern longer than {MAX_PATTERN} characters")
    out: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                while i < n and pattern[i] == "*":
                    i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                tok: Token = ("**",) if i >= n else ("**/",)
                if not out or out[-1] != tok:
                    out.append(tok)
            elif not out or out[-1] != ("*",):
                out.append(("*",))
        elif ch == "?":
            out.append(("?",))
        elif ch == "\\":
            out.append(("c", pattern[i] if i < n else "\\"))
            i += 1
        elif ch == "[":
            j = i
            negated = j < n and pattern[j] in "!^"
            j += negated
            ranges = []
            first = True
            while j < n and (pattern[j] != "]" or first):
                first = False
                lo = pattern[j]
                if lo == "\\" and j + 1 < n:
                    j += 1
                    lo = pattern[j]
                j += 1
                hi = lo
                if j + 1 < n and pattern[j] == "-" and pattern[j + 1] != "]":
                    hi = pattern[j + 1]
                    j += 2
                if hi < lo:
                    raise InvalidParameter(f"syntax error in .dockerignore pattern {pattern!r}: bad range {lo}-{hi}")
                ranges.append((lo, hi))
            if j >= n:
                raise InvalidParameter(f"syntax error in .dockerignore pattern {pattern!r}: unclosed '['")
            out.append(("[", negated, tuple(ranges)))
            i = j + 1
        else:
            out.append(("c", ch))
    return out


def _step(tok: Token, c: str) -> bool:
    kind = tok[0]
    if kind == "c":
        return bool(tok[1] == c)
    if kind == "?":
        return c != "/"
    if kind == "[":
        inside = any(lo <= c <= hi for lo, hi in tok[2])
        return c != "/" and inside != tok[1]
    return False


def _matches(tokens: list[Token], path: str) -> bool:
    """An NFA run over ``path``: states are token positions (and "inside a **/ run" flags)."""
    end = len(tokens)

    def closure(states: set[tuple[int, bool]]) -> set[tuple[int, bool]]:
        todo, seen = list(states), set(states)
        while todo:
            i, inside = todo.pop()
            if inside or i >= end:
                continue
            kind = tokens[i][0]
            if kind in ("*", "**", "**/"):  # each may match nothing
                nxt = [(i + 1, False)] + ([(i, True)] if kind == "**/" else [])
                for st in nxt:
                    if st not in seen:
                        seen.add(st)
                        todo.append(st)
        return seen

    states = closure({(0, False)})
    for c in path:
        new: set[tuple[int, bool]] = set()
        for i, inside in states:
            if i >= end:
                continue
            kind = tokens[i][0]
            if inside:  # within a **/ run: any character, and a / may end it
                new.add((i, True))
                if c == "/":
                    new.add((i + 1, False))
            elif kind == "*":
                if c != "/":
                    new.add((i, False))
            elif kind == "**":
                new.add((i, False))
            elif kind != "**/" and _step(tokens[i], c):
                new.add((i + 1, False))
        if not new:
            return False
        states = closure(new)
    return (end, False) in states


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    tokens: list[Token]
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
            self.patterns.append(_Pattern(p, exclusion, _compile(p), len(p.split("/"))))

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
            hit = _matches(p.tokens, path)
            if not hit and parent and p.depth <= len(parent_dirs):
                hit = _matches(p.tokens, "/".join(parent_dirs[:p.depth]))
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
