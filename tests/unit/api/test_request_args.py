"""Query parameters given twice: the first value counts, as Go's FormValue gives it to dockerd."""

from __future__ import annotations

from berth.api.http import Request
from berth.security.identity import ANONYMOUS


def _req(query: str) -> Request:
    return Request("GET", "/x", query, {}, "1.47", ANONYMOUS)


def test_the_first_of_repeated_values_counts() -> None:
    r = _req("dockerfile=Dockerfile.alt&dockerfile=FROM+scratch%0A&all=1&all=0&n=3&n=9&empty=&empty=x")
    assert r.arg("dockerfile") == "Dockerfile.alt"
    assert r.bool_arg("all") is True
    assert r.int_arg("n") == 3
    assert r.arg("empty", "default") == ""  # present and blank is not absent
    assert r.arg("missing", "default") == "default" and r.bool_arg("missing", True) is True
