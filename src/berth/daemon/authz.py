"""The authorization gate: what a request asks for, put to the listener's role and the policy.

Every request passes here before its handler when berthd has a policy or a listener with a role
(``Application.authorizer``; without either, nothing is checked and nothing is slower). The gate
turns the request into a ``policy.Query``:

- the subject: the connection's identity, its unix groups, its listener and that listener's role;
- the action: the route's name;
- the resource: the object the path names (its labels as tags), the object a create would make
  (the body's labels), or the daemon;
- the context: for ``container.create`` (and exec, volume and network creates) what the body asks
  for, read with the same canonical field names the create uses (Go's JSON decoding ignores case, so
  ``"privileged": true`` must count as ``Privileged``), host paths resolved as the runtime will
  resolve them (symlinks followed), and whether a host path exposes a daemon socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import grp
import json
import logging
import os
import pwd
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from berth.api import versions
from berth.api.http import Request, Response
from berth.api.router import Route
from berth.daemon.authz_context import HOST_NAMESPACES, create_context, exec_context
from berth.errors import BerthError, Forbidden, InvalidParameter, NotFound
from berth.security import authzplugin
from berth.security import policy as pol
from berth.security.identity import ANONYMOUS, Identity

log = logging.getLogger("berth.authz")
_GROUPS_TTL = 30.0  # seconds a user's groups are remembered
_GROUPS_CACHE = 1024  # users remembered
_STARTS = frozenset({"container.start", "container.restart"})
_EVENT_TYPES = {"container": "Container", "image": "Image", "network": "Network", "volume": "Volume"}
_LISTS = {"container.list": "Container", "image.list": "Image", "network.list": "Network", "volume.list": "Volume"}


@dataclass(slots=True)
class _Review:
    """What the gate still has to do with a request's response (``Request.review``)."""

    action: str
    filter_list: bool = True  # a list: keep the items the caller may list
    payload: dict[str, Any] | None = None  # the AuthZ plugins' request, for AuthZRes
_NOT_REMEMBERED = pol.CREATES | _STARTS | {"container.exec", "container.commit"}  # body or query decide


@dataclass(frozen=True, slots=True)
class Resolver:
    """How the gate finds the object a path names: each returns (ID, labels), None when there is none."""

    container: Callable[[str], tuple[str, Mapping[str, str]] | None]
    exec_container: Callable[[str], tuple[str, Mapping[str, str]] | None]
    image: Callable[[str], tuple[str, Mapping[str, str]] | None]
    network: Callable[[str], tuple[str, Mapping[str, str]] | None]
    volume: Callable[[str], tuple[str, Mapping[str, str]] | None]
    host_binds: Callable[[str], list[str]]  # a container's host bind sources (for VolumesFrom)
    create_body: Callable[[str], dict[str, Any] | None]  # a container's configuration, as its create had it


class Gate:
    def __init__(self, policy: pol.Policy | None, roles: Mapping[str, str], resolver: Resolver,
                 daemon_sockets: tuple[str, ...],
                 match: Callable[[str, str], tuple[Route, dict[str, str]] | None],
                 plugins: list[authzplugin.Plugin] | None = None) -> None:
        self.policy = policy
        self.plugins = list(plugins or [])
        self.common_headers: dict[str, str] = {}  # the headers every answer carries (for AuthZRes)
        self.match = match
        self.roles = dict(roles)  # listener name → role
        self.resolver = resolver
        self.daemon_sockets = tuple(os.path.realpath(p) for p in daemon_sockets)
        self._groups: OrderedDict[tuple[int, int], tuple[float, tuple[str, ...], tuple[int, ...]]] = OrderedDict()
        self._allowed: dict[tuple[Any, ...], tuple[float, str]] = {}  # allowed, without parameters → (until, rule)

    # ---- the subject ----------------------------------------------------------------------------
    def subject(self, identity: Identity) -> pol.Subject:
        role = self.roles.get(identity.listener, "")
        if identity.kind != "unix" or identity.uid is None:
            return pol.Subject(identity, role=role)
        names, gids = self._unix_groups(identity.uid, identity.gid if identity.gid is not None else -1)
        return pol.Subject(identity, names, gids, role)

    def _unix_groups(self, uid: int, gid: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
        key = (uid, gid)
        hit = self._groups.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < _GROUPS_TTL:
            return hit[1], hit[2]
        gids = {gid} if gid >= 0 else set()
        try:
            pw = pwd.getpwuid(uid)
            gids.update(os.getgrouplist(pw.pw_name, pw.pw_gid))
        except KeyError:
            pass
        names = []
        for g in sorted(gids):
            try:
                names.append(grp.getgrgid(g).gr_name)
            except KeyError:
                continue
        self._groups[key] = (now, tuple(names), tuple(sorted(gids)))
        if len(self._groups) > _GROUPS_CACHE:
            self._groups.popitem(last=False)
        return tuple(names), tuple(sorted(gids))

    # ---- explain: the decision for a request someone else would make -----------------------------
    def policy_explain(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``berth policy explain``: which rule decides ``spec`` (Method, Path, Body; User, or CN/O/OU,
        or Anonymous; Listener) under the running policy, or under ``Policy`` (a candidate's text)."""
        policy = self.policy
        if spec.get("Policy"):
            policy = pol.Policy(str(spec["Policy"]), source="the policy given")
        if policy is None:
            raise InvalidParameter("berthd has no authorization policy (give one to explain with --policy)")
        identity = _explained_identity(spec)
        method = str(spec.get("Method") or "GET").upper()
        path, _, query = str(spec.get("Path") or "/").partition("?")
        version, path = versions.split_version(path)
        found = self.match(method, path)
        if found is None:
            raise NotFound(f"no route {method} {path}")
        route, params = found
        body = spec.get("Body")
        req = Request(method, path, query, {}, version or versions.API_VERSION, identity, params,
                      body=json.dumps(body).encode() if body is not None else b"")
        subject = self.subject(identity)
        out: dict[str, Any] = {"Principal": identity.principal, "Action": route.action, "Role": subject.role,
                               "Groups": list(subject.groups)}
        if subject.role and not pol.role_allows(subject.role, route.action, method):
            out.update(Allowed=False, Rules=[], Message=f"the listener's role {subject.role} does not allow "
                       f"{route.action}", Errors=[])
            return out
        q = self.query(subject, req, route)
        d = policy.decide(q)
        out.update(Allowed=d.allowed, Rules=list(d.rules), Message=self._message(d, q), Errors=list(d.errors),
                   Resource=f'{q.resource_type}::"{q.resource_id}"', ResourceLabels=dict(q.labels),
                   ForcedLabels=dict(d.labels), Context=dict(q.context))
        return out

    # ---- the decision ---------------------------------------------------------------------------
    def authorize(self, req: Request, route: Route) -> Awaitable[None] | None:
        """Raises Forbidden, or returns None (the request may go ahead), or, with AuthZ plugins, what
        to await for their answers. The listener's role and the policy decide first; plugins are
        asked only about what those allow (both must allow)."""
        self._local(req, route)
        if self.policy is not None and route.action in _LISTS:
            req.review = _Review(route.action)  # the list is filtered to what the caller may list
        elif self.policy is not None and route.action == "system.events":
            req.visible = self._event_filter(req, self.policy)
        if not self.plugins:
            return None
        return self._ask_plugins(req, route)

    async def _ask_plugins(self, req: Request, route: Route) -> None:
        ident = req.identity
        user, authn = ("", "")
        if ident.kind == "tls":
            user, authn = ident.user, "TLS"
        elif ident.kind == "unix":
            user, authn = ident.user, "unix"
        uri = req.raw_target or req.path
        payload = authzplugin.request_payload(user, authn, req.method, uri, req.headers, req.body,
                                              [ident.certificate] if ident.certificate else [])
        req.review = _Review(route.action, filter_list=req.review is not None, payload=payload)
        for plugin in self.plugins:
            try:
                await asyncio.to_thread(plugin.decide, authzplugin.REQUEST, payload)
            except Forbidden as exc:
                req.decision, req.rule = "deny", f"plugin:{plugin.name}"
                req.review = None  # a request refused is not answered to the plugins again (moby)
                log.info("%s %s %s: %s", ident.principal, req.method, req.path, exc.message)
                raise
            except BaseException:
                req.review = None
                raise

    async def review(self, req: Request, resp: Response | None) -> Response | None:
        """A list filtered to what the policy lets the caller list (each item decided as the object
        it is, with its labels); then AuthZRes: every plugin sees the response (its status, headers
        and JSON body; nothing of a stream or a hijack, as with dockerd, where those are flushed
        before the plugin is asked)."""
        rv: _Review = req.review
        if rv.filter_list and resp is not None and resp.status == 200:
            resp = self._filter(req, rv.action, resp)
        if rv.payload is None:
            return resp
        payload = rv.payload
        if resp is None:
            full = dict(payload)
        else:
            # what moby's response recorder holds when the plugin is asked: the headers every answer
            # carries, the handler's own, and the status when the handler set it explicitly (all do
            # but /_ping's, which writes "OK": no ResponseStatusCode, and no Content-Type for a GET)
            headers = {**self.common_headers, **(resp.headers or {})}
            ping = resp.status == 200 and (resp.content_type or "").startswith("text/plain")
            if resp.content_type and not (ping and req.method == "GET"):
                headers["Content-Type"] = resp.content_type
            if ping and req.method == "HEAD":
                headers["Content-Length"] = "0"
            full = authzplugin.response_payload(payload, 0 if ping else resp.status, headers, resp.body,
                                                resp.content_type or "")
        for plugin in self.plugins:
            try:
                await asyncio.to_thread(plugin.decide, authzplugin.RESPONSE, full)
            except Forbidden as exc:
                if resp is None or resp.status >= 400:
                    log.warning("%s %s: %s (the response was already on its way)", req.method, req.path,
                                exc.message)
                    return resp
                req.decision, req.rule = "deny", f"plugin:{plugin.name}"
                raise
        return resp

    def _event_filter(self, req: Request, policy: pol.Policy) -> Callable[[dict[str, Any]], bool]:
        """Events about objects the caller may not see are left out of its stream: each is decided as
        ``system.events`` on its object (the event's attributes, labels among them, as tags)."""
        subject = self.subject(req.identity)
        context = pol.neutral_context()
        context.update(listener=req.identity.listener, role=subject.role, method=req.method, path=req.path)

        def visible(event: dict[str, Any]) -> bool:
            rtype = _EVENT_TYPES.get(str(event.get("Type")), "Daemon")
            if rtype == "Daemon":
                return policy.decide(pol.Query(subject, "system.events", context=context)).allowed
            actor = event.get("Actor") or {}
            tags = _labels(actor.get("Attributes"))
            return policy.decide(pol.Query(subject, "system.events", rtype, str(actor.get("ID") or ""),
                                           MappingProxyType(tags), context, neutral=not tags)).allowed

        return visible

    def _filter(self, req: Request, action: str, resp: Response) -> Response:
        policy = self.policy
        if policy is None:
            return resp
        try:
            value = json.loads(resp.body)
        except ValueError:
            return resp
        items = value.get("Volumes") if isinstance(value, dict) else value
        if not isinstance(items, list):
            return resp
        subject = self.subject(req.identity)
        rtype = _LISTS[action]
        context = pol.neutral_context()
        context.update(listener=req.identity.listener, role=subject.role, method=req.method, path=req.path)
        kept = []
        for item in items:
            if not isinstance(item, dict):
                continue
            rid = str(item.get("Name") if rtype == "Volume" else item.get("Id") or "")
            labels = _labels(item.get("Labels"))
            if policy.decide(pol.Query(subject, action, rtype, rid, MappingProxyType(labels), context,
                                       neutral=not labels)).allowed:
                kept.append(item)
        if len(kept) == len(items):
            return resp
        out = {**value, "Volumes": kept} if isinstance(value, dict) else kept
        return Response(resp.status, json.dumps(out).encode() + b"\n", resp.content_type, resp.headers)

    def _local(self, req: Request, route: Route) -> None:
        """The listener's role and the policy. Allowed requests to routes without parameters that ask
        for nothing (``/_ping``, ``/info``, lists) are remembered per caller for as long as its groups
        are (the policy's own cache keys on more)."""
        conn = req.connection
        memo = conn.authz_memo if conn is not None else None
        if (memo is not None and memo[0] is route and memo[1] == req.method and memo[2] == req.path
                and memo[3] is self.policy and memo[4] > time.monotonic()):
            req.decision, req.rule = "allow", memo[5]  # the connection's last request again (one caller)
            return
        ident = req.identity
        fast = None
        if "{" not in route.pattern and route.action not in _NOT_REMEMBERED:
            fast = (ident.kind, ident.user, ident.uid, ident.gid, ident.organization, ident.organizational_unit,
                    ident.listener, route.action, req.method, req.path, id(self.policy))
            hit = self._allowed.get(fast)
            if hit is None or hit[0] <= time.monotonic():
                self._decide(req, route)
                if len(self._allowed) >= _GROUPS_CACHE * 4:
                    self._allowed.clear()
                hit = self._allowed[fast] = (time.monotonic() + _GROUPS_TTL, req.rule)
            req.decision, req.rule = "allow", hit[1]
            if conn is not None:
                conn.authz_memo = [route, req.method, req.path, self.policy, hit[0], hit[1]]
            return
        self._decide(req, route)

    def _decide(self, req: Request, route: Route) -> None:
        subject = self.subject(req.identity)
        if subject.role and not pol.role_allows(subject.role, route.action, req.method):
            req.decision, req.rule = "deny", f"role:{subject.role}"
            raise Forbidden(f"authorization denied: the listener {req.identity.listener} has the role "
                            f"{subject.role}, which does not allow {route.action}")
        if self.policy is None:
            req.decision, req.rule = "allow", f"role:{subject.role}" if subject.role else ""
            return
        query = self.query(subject, req, route)
        decision = self.policy.decide(query)
        req.decision, req.rule = ("allow" if decision.allowed else "deny"), ",".join(decision.rules)
        if query.resource_type != "Daemon":
            req.resource = f"{query.resource_type}:{query.resource_id}"
        for err in decision.errors:
            log.warning("authorization policy: %s", err)
        if not decision.allowed:
            message = self._message(decision, query)
            log.info("%s %s %s: %s", subject.describe(), req.method, req.path, message)
            raise Forbidden(message)
        if decision.labels:
            req.body = force_labels(req.body, decision.labels)

    @staticmethod
    def _message(d: pol.Decision, q: pol.Query) -> str:
        """A denial's words, with what the request asked for that matters (why a rule may have hit)."""
        if d.allowed or not q.context.get("escalates"):
            return d.message
        c = q.context
        asks = [k for k in ("privileged", "seccomp_unconfined", "paths_unconfined") if c[k]]
        asks += [f"device cgroup rule {r}" for r in c["device_cgroup_rules"][:2]]
        if c["daemon_socket"]:
            asks.append("a bind that exposes the daemon's socket")
        asks += [f"host path {p}" for p in c["host_paths"] if p in _shortest(c["host_paths"])][:3]
        asks += [f"device {d}" for d in c["devices"][:3]] + [f"cap_add {x}" for x in c["cap_add"][:3]]
        asks += [f"{k} {c[k]}" for k in HOST_NAMESPACES if c[k] == "host" or str(c[k]).startswith("container:")]
        return f"{d.message} (the request asks for: {', '.join(asks)})" if asks else d.message

    def query(self, subject: pol.Subject, req: Request, route: Route) -> pol.Query:
        action = route.action
        context = pol.neutral_context()
        neutral = True
        rtype, rid = "Daemon", "berthd"
        labels: Mapping[str, str] = {}
        if action in pol.CREATES or route.pattern == "/containers/{id}/exec":
            neutral = False
            body = _json_object(req.body)
            if action == "container.create":
                context, labels = create_context(body, self.resolver.host_binds, self.daemon_sockets)
                rtype, rid = "Container", "new"
            elif action == "container.exec":
                context = exec_context(body)
            else:
                labels = _labels(body.get("Labels") or body.get("labels"))
                rtype, rid = ("Volume" if action == "volume.create" else "Network"), "new"
        if rid == "berthd":
            found = self._resource(route, req)
            if found is not None:
                rtype, rid, labels = found
        if action in _STARTS and rtype == "Container":
            # decided again with what the container asks for now: its host paths are resolved at the
            # start (a symlink changed since the create is seen), and a rule on context applies to
            # starting it as well as to creating it
            stored = self.resolver.create_body(rid)
            if stored is not None:
                context, _ = create_context(stored, self.resolver.host_binds, self.daemon_sockets)
                neutral = False
        context.update(listener=req.identity.listener, role=subject.role, method=req.method, path=req.path)
        return pol.Query(subject, action, rtype, rid, MappingProxyType(dict(labels)), context, neutral)

    def _resource(self, route: Route, req: Request) -> tuple[str, str, Mapping[str, str]] | None:
        p = req.params
        kind = route.action.split(".")[0]
        found: tuple[str, Mapping[str, str]] | None = None
        rtype = ""
        try:
            if route.pattern.startswith("/exec/"):
                rtype, found = "Container", self.resolver.exec_container(p["id"])
            elif kind == "container" and ("id" in p or "parent" in p):
                rtype, found = "Container", self.resolver.container(p.get("id") or p["parent"])
            elif route.action == "container.commit" and req.arg("container"):
                rtype, found = "Container", self.resolver.container(req.arg("container"))
            elif kind == "image" and "name" in p:
                rtype, found = "Image", self.resolver.image(p["name"])
            elif kind == "network" and "id" in p:
                rtype, found = "Network", self.resolver.network(p["id"])
            elif kind == "volume" and "name" in p:
                rtype, found = "Volume", self.resolver.volume(p["name"])
        except BerthError:
            found = None
        if not rtype:
            return None
        if found is None:
            ref = next(iter(p.values()), "") or req.arg("container")
            return rtype, ref, {}  # no such object: decided without labels (the handler answers 404)
        return rtype, found[0], found[1]


def force_labels(raw: bytes, labels: Mapping[str, str]) -> bytes:
    """The create body with ``labels`` set (over the caller's own values)."""
    body = _json_object(raw)
    key = next((k for k in body if k.lower() == "labels"), "Labels")
    current = body.get(key)
    body[key] = {**(current if isinstance(current, dict) else {}), **labels}
    return json.dumps(body).encode()


def _explained_identity(spec: dict[str, Any]) -> Identity:
    listener = str(spec.get("Listener") or "")
    if spec.get("User") not in (None, ""):
        who = str(spec["User"])
        try:
            pw = pwd.getpwuid(int(who)) if who.isdigit() else pwd.getpwnam(who)
        except KeyError:
            raise NotFound(f"no unix user {who} on the daemon's host") from None
        return Identity("unix", user=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, listener=listener)
    if spec.get("CN"):
        return Identity("tls", user=str(spec["CN"]), organization=str(spec.get("O") or ""),
                        organizational_unit=str(spec.get("OU") or ""), listener=listener)
    return dataclasses.replace(ANONYMOUS, listener=listener)


def _shortest(paths: list[str]) -> set[str]:
    """The paths none of the others contains."""
    return {p for p in paths if not any(o != p and p.startswith(o.rstrip("/") + "/") for o in paths)}


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidParameter(f"invalid JSON in the request body: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object")
    return body


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
