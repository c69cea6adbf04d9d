"""Who may do what: authorization policies in Cedar, decided by ``cedarpy`` (Cedar's own Rust engine).

Cedar was chosen over casbin because the decisions that matter here are conditions on what a request
*asks for* (privileged, host paths, devices, capabilities, namespaces, labels): Cedar evaluates typed
attributes of the principal, the resource and the request context, validates a policy against a
schema (a misspelt attribute is an error at ``berth policy check`` and at load, not a silent "no
match"), has forbid rules that override permits, and names the rules that decided. casbin's models
match strings (``r.sub == p.sub && keyMatch(r.obj, p.obj)``); conditions on request bodies would
have been code of ours. See ``docs/security.md`` for the vocabulary and recipes.

The vocabulary, also in ``SCHEMA``:

- principals: ``UnixUser::"alice"`` (attributes ``name``, ``uid``, ``gids``; member of its
  ``UnixGroup::"name"`` groups), ``TlsClient::"CN"`` (``cn``, ``o``, ``ou``; member of
  ``TlsOrg::"O"`` and ``TlsUnit::"OU"``), ``Anonymous::"anonymous"``; each is also in
  ``Role::"NAME"`` when its listener has that role (``listener-policies``).
- actions: every route's name (``container.create``), in its groups: ``Action::"container"`` (the
  prefix), ``Action::"read"`` (GET/HEAD routes), ``Action::"read-only"`` (what the built-in
  read-only role allows) and ``Action::"write"`` (the rest).
- resources: ``Container``/``Image``/``Network``/``Volume``/``Exec`` with the object's labels as
  tags (``resource.getTag("team")``); for a create, the object to be (its ID is ``new``); otherwise
  ``Daemon::"berthd"``.
- context: ``Context`` below; every attribute is always present (false/empty when not asked for).

A permit rule annotated ``@labels("team=blue,env=ci")`` permits a create as if it carried those
labels and makes it carry them (a team's containers always have the team's label).
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from berth.errors import InvalidParameter
from berth.security import actions as catalogue
from berth.security.identity import Identity

ROLES = ("admin", "read-only")  # built in; a policy may name more (Role::"NAME")
RESOURCE_TYPES = ("Container", "Image", "Network", "Volume", "Exec", "Daemon")
CREATES = frozenset({"container.create", "volume.create", "network.create"})
# GET routes the read-only role refuses: container files, attach streams, image contents, secrets.
NOT_READ_ONLY = frozenset({"container.archive.read", "container.export", "container.attach", "image.save",
                           "swarm.secret.list", "swarm.secret.inspect", "swarm.config.list", "swarm.config.inspect",
                           "swarm.unlockkey"})
_CACHE_SIZE = 4096  # decisions kept for requests whose context is neutral (no body to look at)

# The request context every action has (Cedar needs every attribute present: see ``neutral_context``).
_CONTEXT: dict[str, str] = {
    "listener": "String", "role": "String", "method": "String", "path": "String",
    "privileged": "Bool", "host_paths": "Set<String>", "host_path_prefixes": "Set<String>",
    "daemon_socket": "Bool", "devices": "Set<String>", "device_cgroup_rules": "Set<String>", "cap_add": "Set<String>",
    "paths_unconfined": "Bool",
    "network_mode": "String", "pid_mode": "String", "ipc_mode": "String", "uts_mode": "String",
    "userns_mode": "String", "cgroupns_mode": "String", "security_opt": "Set<String>",
    "seccomp_unconfined": "Bool", "escalates": "Bool", "image": "String", "user": "String",
}


def neutral_context() -> dict[str, Any]:
    """The context of a request that asks for nothing beyond its action."""
    out: dict[str, Any] = {}
    for name, kind in _CONTEXT.items():
        out[name] = False if kind == "Bool" else [] if kind.startswith("Set") else ""
    return out


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks: the connection's identity, its unix groups, the listener and the listener's role."""

    identity: Identity
    groups: tuple[str, ...] = ()  # unix group names
    gids: tuple[int, ...] = ()
    role: str = ""

    def entity(self) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """(its Cedar uid, its entities)."""
        i = self.identity
        parents = [{"type": "Role", "id": self.role}] if self.role else []
        if i.kind == "unix":
            uid = {"type": "UnixUser", "id": i.user or str(i.uid)}
            parents += [{"type": "UnixGroup", "id": g} for g in self.groups]
            attrs: dict[str, Any] = {"name": i.user, "uid": i.uid if i.uid is not None else -1,
                                     "gids": list(self.gids)}
        elif i.kind == "tls":
            uid = {"type": "TlsClient", "id": i.user}
            parents += [{"type": "TlsOrg", "id": i.organization}] if i.organization else []
            parents += [{"type": "TlsUnit", "id": i.organizational_unit}] if i.organizational_unit else []
            attrs = {"cn": i.user, "o": i.organization, "ou": i.organizational_unit}
        else:
            uid, attrs = {"type": "Anonymous", "id": "anonymous"}, {}
        return uid, [{"uid": uid, "attrs": attrs, "parents": parents}]

    def describe(self) -> str:
        return self.identity.principal

    def key(self) -> tuple[Any, ...]:
        """What a decision can depend on (not the peer's pid)."""
        i = self.identity
        return (i.kind, i.user, i.uid, i.gid, i.organization, i.organizational_unit, i.listener, self.groups,
                self.gids, self.role)


@dataclass(frozen=True, slots=True)
class Query:
    subject: Subject
    action: str
    resource_type: str = "Daemon"
    resource_id: str = "berthd"
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    context: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType(neutral_context()))
    neutral: bool = True  # the context holds only listener, role, method and path: the decision may be cached


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rules: tuple[str, ...]  # the rules that decided (permits when allowed, forbids when denied)
    message: str  # for a denial: the 403's words; for an allow: which rules
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # forced on a create
    errors: tuple[str, ...] = ()  # rules that could not be evaluated (Cedar skips them)


def action_groups(action: str, method: str) -> list[str]:
    groups = [action.split(".")[0]]
    if method in ("GET", "HEAD"):
        groups.append("read")
        if action not in NOT_READ_ONLY:
            groups.append("read-only")
    else:
        groups.append("write")
    return groups


def role_allows(role: str, action: str, method: str) -> bool:
    """The built-in roles: admin allows everything; read-only the ``read-only`` group."""
    if role == "read-only":
        return "read-only" in action_groups(action, method)
    return True


def schema(actions: Mapping[str, str]) -> str:
    """Cedar's schema for ``actions`` (name → method)."""
    ctx = ", ".join(f"{k}: {v}" for k, v in _CONTEXT.items())
    groups = sorted({g for a, m in actions.items() for g in action_groups(a, m)})
    lines = [
        "entity Role;", "entity UnixGroup;", "entity TlsOrg;", "entity TlsUnit;",
        "entity UnixUser in [UnixGroup, Role] { name: String, uid: Long, gids: Set<Long> };",
        "entity TlsClient in [TlsOrg, TlsUnit, Role] { cn: String, o: String, ou: String };",
        "entity Anonymous in [Role];", "entity Daemon;",
        "entity Container, Image, Network, Volume, Exec tags String;",
        f"type Context = {{ {ctx} }};",
        *(f'action "{g}";' for g in groups),
    ]
    for name, method in sorted(actions.items()):
        parents = ", ".join(f'Action::"{g}"' for g in action_groups(name, method))
        lines.append(f'action "{name}" in [{parents}] appliesTo {{ principal: [UnixUser, TlsClient, Anonymous], '
                     f"resource: [{', '.join(RESOURCE_TYPES)}], context: Context }};")
    return "\n".join(lines)


class Policy:
    """A validated policy file, ready to decide."""

    def __init__(self, text: str, actions: Mapping[str, str] | None = None, source: str = "policy") -> None:
        import cedarpy  # imported here: berthd without a policy never loads the engine

        self._cedar = cedarpy
        self.source = source
        self.actions = dict(actions if actions is not None else catalogue.methods())
        try:
            parsed = json.loads(cedarpy.policies_to_json_str(text))
        except Exception as exc:  # noqa: BLE001 - cedarpy raises plain exceptions for syntax errors
            raise InvalidParameter(f"{source}: {_locate(cedarpy, text, exc)}") from None
        self.rules: dict[str, dict[str, Any]] = parsed.get("staticPolicies", {})
        self.names = {pid: (r.get("annotations") or {}).get("id") or f"#{int(pid.removeprefix('policy')) + 1}"
                      for pid, r in self.rules.items()}
        schema_text = schema(self.actions)
        result = cedarpy.validate_policies(text, schema_text)
        if not result.validation_passed:
            found: dict[str, None] = {}
            for e in result.errors:
                msg = re.sub(r" for Action::\"[^\"]*\"|for policy `[^`]*`, ", "", str(getattr(e, "error", e)))
                pid = str(getattr(e, "policy_id", ""))
                found[f"rule {self.names.get(pid, pid)}: {_rename(msg, self.names)}"] = None
            problems = list(found)
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise InvalidParameter(f"{source}: " + "; ".join(problems[:5]) + more)
        if parsed.get("templates"):
            raise InvalidParameter(f"{source}: templates (?principal, ?resource) are not used by berth")
        self.forced: dict[str, dict[str, str]] = {}
        for pid, rule in self.rules.items():
            ann = rule.get("annotations") or {}
            if "labels" in ann:
                if rule.get("effect") != "permit":
                    raise InvalidParameter(f"{source}: rule {self.names[pid]}: @labels belongs on a permit rule")
                self.forced[pid] = _parse_labels(ann["labels"], f"{source}: rule {self.names[pid]}")
        self._set = cedarpy.PolicySet.from_str(text)
        # the actions' groups come from the schema (a handle parsed once): giving them as entities
        # on every call cost 0.9 ms a decision, this 0.2 ms (measured)
        self._schema = cedarpy.Schema.from_str(schema_text)
        self._cache: OrderedDict[tuple[Any, ...], Decision] = OrderedDict()
        self.text = text

    @classmethod
    def load(cls, path: str, actions: Mapping[str, str] | None = None) -> Policy:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(1 << 20)
        except OSError as exc:
            raise InvalidParameter(f"cannot read the authorization policy {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvalidParameter(f"the authorization policy {path} is not UTF-8 text") from None
        return cls(text, actions, path)

    def roles(self) -> set[str]:
        """The roles the policy names (``Role::"NAME"``)."""
        return set(re.findall(r'Role::"((?:[^"\\]|\\.)*)"', self.text))

    def decide(self, q: Query) -> Decision:
        key = None
        if q.neutral and not q.labels:
            key = (q.subject.key(), q.action, q.resource_type, q.resource_id, q.context["method"], q.context["path"])
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        d = self._decide(q)
        if key is not None:
            self._cache[key] = d
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return d

    def _evaluate(self, q: Query, labels: Mapping[str, str]) -> tuple[bool, list[str], list[str]]:
        principal, entities = q.subject.entity()
        resource = {"type": q.resource_type, "id": q.resource_id}
        entities = [*entities,
                    {"uid": resource, "attrs": {}, "parents": [],
                     **({"tags": dict(labels)} if q.resource_type != "Daemon" else {})}]
        ctx = dict(q.context)
        r = self._cedar.is_authorized({"principal": principal, "action": {"type": "Action", "id": q.action},
                                       "resource": resource, "context": ctx}, self._set, entities, self._schema)
        errors = [_rename(str(e), self.names) for e in (r.diagnostics.errors or [])]
        return bool(r.allowed), list(r.diagnostics.reasons or []), errors

    def _decide(self, q: Query) -> Decision:
        who = q.subject.describe()
        allowed, reasons, errors = self._evaluate(q, q.labels)
        if not allowed and not reasons and q.action in CREATES:
            # a labelled permit rule: does it permit the create once its labels are on it?
            for pid, forced in self.forced.items():
                a2, r2, e2 = self._evaluate(q, {**q.labels, **forced})
                if a2 and pid in r2:
                    allowed, reasons, errors = a2, r2, e2
                    break
        names = tuple(self.names.get(p, p) for p in reasons)
        if allowed:
            forced = {}
            if q.action in CREATES:
                for p in reasons:
                    forced.update(self.forced.get(p, {}))
            return Decision(True, names, "permitted by rule " + ", ".join(names), MappingProxyType(forced),
                            tuple(errors))
        if names:
            msg = (f"authorization denied by berth policy: rule {', '.join(names)} forbids {q.action} "
                   f"for {who}")
        else:
            msg = f"authorization denied by berth policy: no rule permits {q.action} for {who}"
        return Decision(False, names, msg, errors=tuple(errors))


def _parse_labels(text: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k:
            raise InvalidParameter(f"{where}: @labels wants key=value[,key=value], got {text!r}")
        out[k] = v
    return out


def _locate(cedarpy: Any, text: str, exc: BaseException) -> str:
    """Cedar's syntax error, with the line of the first rule that does not parse."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    start, line, quoted = 0, 1, False
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif ch == ";" and not quoted or i == len(text) - 1:
            chunk = text[start:i + 1]
            try:
                cedarpy.policies_to_json_str(chunk)
            except Exception:  # noqa: BLE001 - the rule that fails
                lines = chunk.split("\n")
                lead = next((n for n, t in enumerate(lines) if t.strip() and not t.strip().startswith("//")), 0)
                return f"the rule at line {line + lead}: {message}"
            line += chunk.count("\n")
            start = i + 1
    return message


def _rename(text: str, names: Mapping[str, str]) -> str:
    """Cedar's ``policy3`` as the rule's name."""
    return re.sub(r"\bpolicy(\d+)\b", lambda m: names.get(m.group(0), f"rule #{int(m.group(1)) + 1}"), text)


def check_file(path: str, actions: Mapping[str, str] | None = None) -> Policy:
    """Load and validate; raises InvalidParameter with Cedar's words."""
    if not os.path.isfile(path):
        raise InvalidParameter(f"the authorization policy {path} does not exist")
    return Policy.load(path, actions)
