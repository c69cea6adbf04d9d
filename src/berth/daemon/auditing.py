"""The audit log's records of requests and of the daemon's own actions (``security.audit`` keeps
the chain, the signatures and the files)."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from berth.api.http import Request
from berth.api.router import Route
from berth.security.audit import AuditWriter, Overloaded
from berth.security.identity import Identity

log = logging.getLogger("berth.audit")


class RequestAuditor:
    """``api.backends.Auditor``: one record per request, once answered."""

    def __init__(self, audit: AuditWriter) -> None:
        self.audit = audit

    def admit(self) -> None:
        self.audit.admit()

    def done(self, identity: Identity, method: str, target: str, req: Request | None, route: Route | None,
             status: int, sent: int, seconds: float, memo: list[Any] | None = None) -> None:
        # Built as text, not a dict through json.dumps (12 µs a record that way, measured): this runs
        # for every request, /_ping included. What repeats on a connection (who, what, the decision)
        # is kept in ``memo``, the connection's own (a connection has one caller).
        body = req.body if req is not None else b""
        key = (method, target, id(route), req.decision, req.rule, req.resource) if req is not None else \
            (method, target)
        if memo is not None and memo[0] == key:
            head = memo[1]  # the connection's last request again (a client polling /_ping, /info…)
        else:
            head = self._head(identity, method, target, req, route)
            if memo is not None:
                memo[0], memo[1] = key, head
        if body:
            head += f',"body":{{"bytes":{len(body)},"sha256":"{hashlib.sha256(body).hexdigest()}"}}'
        try:
            self.audit.record_fields(f'{head},"status":{status},"bytes":{sent},"us":{int(seconds * 1_000_000)}')
        except Overloaded:
            pass  # counted; admit() refuses the next requests

    @staticmethod
    def _head(identity: Identity, method: str, target: str, req: Request | None, route: Route | None) -> str:
        path, _, query = target.partition("?")
        parts = [f'"kind":"request","principal":{_q(identity.principal)},"auth":"{identity.kind}",'
                 f'"listener":{_q(identity.listener)},"method":{_q(method)},"path":{_q(path)}']
        if query:
            parts.append(f'"query":{_q(query)}')
        if route is not None:
            parts.append(f'"action":"{route.action}"')
        if req is not None:
            if req.decision:
                parts.append(f'"decision":"{req.decision}"')
                if req.rule:
                    parts.append(f'"rule":{_q(req.rule)}')
            if req.resource:
                parts.append(f'"resource":{_q(req.resource)}')
        return ",".join(parts)

    def daemon(self, action: str, **attrs: Any) -> None:
        """The daemon's own actions: start, stop, reload, policy change."""
        try:
            self.audit.record({"kind": "daemon", "action": action, **attrs})
        except Overloaded:
            log.error("audit log: could not record the daemon's %s: the log is behind", action)


def _q(text: str) -> str:
    """``text`` as a JSON string: as it is when it needs no escape (paths and names mostly)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)
