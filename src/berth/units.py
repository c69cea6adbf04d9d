"""Docker's ``go-units`` for people: one HumanDuration for the daemon's container Status ("Up 3
weeks") and the CLI's columns ("3 weeks ago"); and Go's ``time.Duration`` as text, both ways (the API's
``until``/``since``, HEALTHCHECK's flags and the history's words)."""

from __future__ import annotations

import re

_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration``: "1h30m", "1.5s", "-2m", "0"; in nanoseconds. ValueError when
    ``text`` is not one."""
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0
    parts = _GO_PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * sum(int(float(n) * _GO_UNITS[u]) for n, u in parts)


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: 30s, 1m30s, 1h0m0s, 500ms, 0s."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + f"{ns / size:.9f}".rstrip("0").rstrip(".") + unit
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    secs = f"{rest / 10**9:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{sign}{h}h{m}m{secs}"
    return f"{sign}{m}m{secs}" if m else sign + secs


def human_duration(seconds: float) -> str:
    """docker/go-units ``HumanDuration``: hours round half away from zero (Go's ``math.Round``), the
    years from the whole hours."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = int(seconds / 3600 + 0.5)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"
