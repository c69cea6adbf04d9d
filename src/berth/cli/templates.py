"""A small subset of Go's text/template, enough for docker's --format: ``{{.Field.Sub}}``,
``{{json .X}}``, ``{{.}}``, ``{{upper .X}}``, ``{{lower .X}}``, ``{{join .X ","}}`` and literal text
(with ``\\t`` and ``\\n`` escapes, as the docker CLI accepts them)."""

from __future__ import annotations

import json
import re
from typing import Any

from berth.errors import InvalidParameter

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


def _lookup(value: Any, path: str) -> Any:
    if path == ".":
        return value
    for part in path.lstrip(".").split("."):
        if isinstance(value, dict):
            if part not in value:
                raise InvalidParameter(f'template: map has no entry for key "{part}"')
            value = value[part]
        else:
            value = getattr(value, part, None)
    return value


def _show(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_show(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_show(v) for v in value) + "]"
    return str(value)


def _eval(expr: str, data: Any) -> str:
    words = expr.split()
    if not words:
        return ""
    fn = words[0]
    if fn == "json" and len(words) == 2:
        return json.dumps(_lookup(data, words[1]), separators=(",", ":"))
    if fn in ("upper", "lower", "title") and len(words) == 2:
        return getattr(_show(_lookup(data, words[1])), fn)()
    if fn == "join" and len(words) == 3:
        return json.loads(words[2]).join(_show(v) for v in (_lookup(data, words[1]) or []))
    if len(words) == 1 and fn.startswith("."):
        return _show(_lookup(data, fn))
    raise InvalidParameter(f"template: unsupported action {{{{{expr}}}}}")


def render(template: str, data: Any) -> str:
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    return _ACTION.sub(lambda m: _eval(m.group(1), data), template)
