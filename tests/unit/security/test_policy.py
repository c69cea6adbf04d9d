"""The policy engine's wrapper (Cedar through cedarpy), the action catalogue and what the gate reads
from a create body: no daemon, the real engine."""

from __future__ import annotations

import os

import pytest

from berth.api.router import Router
from berth.api.routes import build, containers, images, networks, swarm, system, volumes
from berth.daemon.authz import Gate, Resolver
from berth.daemon.authz_context import create_context
from berth.errors import InvalidParameter
from berth.security import actions, policy
from berth.security.identity import Identity

ALICE = policy.Subject(Identity("unix", user="alice", uid=1000, gid=1000), ("alice", "blue"), (1000, 2000))
BOB = policy.Subject(Identity("tls", user="bob", organization="acme", organizational_unit="ops"))


class _Any:
    def __getattr__(self, name: str) -> None:
        return None


def test_every_route_has_a_catalogue_name_and_every_name_a_route() -> None:
    d = _Any()
    router = Router([*system.routes(d), *system.policy_routes(d), *images.routes(d), *containers.routes(d, d),  # type: ignore[arg-type]
                     *containers.exec_routes(d), *volumes.routes(d), *networks.routes(d), *swarm.routes(),  # type: ignore[arg-type]
                     *build.routes(d, d)])  # type: ignore[arg-type]
    routed = {(r.method, r.pattern) for r in router.routes()}
    assert routed == {(m, p) for m, p, _ in actions.CATALOGUE}
    assert actions.check_names() == []
    methods = actions.methods()
    assert methods["container.attach"] == "POST"  # POST /attach and GET /attach/ws: a write
    assert methods["container.list"] == "GET"


def test_groups_and_the_read_only_role() -> None:
    assert policy.action_groups("container.list", "GET") == ["container", "read", "read-only"]
    assert policy.action_groups("container.archive.read", "HEAD") == ["container", "read"]
    assert policy.action_groups("container.create", "POST") == ["container", "write"]
    assert policy.role_allows("read-only", "system.events", "GET")
    assert not policy.role_allows("read-only", "container.export", "GET")
    assert not policy.role_allows("read-only", "container.start", "POST")
    assert policy.role_allows("admin", "container.start", "POST")


def test_a_policy_is_validated_against_the_vocabulary() -> None:
    with pytest.raises(InvalidParameter, match="attribute `privilged` in context not found"):
        policy.Policy("permit(principal, action, resource) when { context.privilged };")
    with pytest.raises(InvalidParameter, match='unrecognized action `Action::"container.creat"`|container.creat'):
        policy.Policy('permit(principal, action == Action::"container.creat", resource);')
    with pytest.raises(InvalidParameter, match="the rule at line 3: "):
        policy.Policy('permit(principal, action, resource);\n\npermit(principal action, resource);')
    with pytest.raises(InvalidParameter, match="@labels belongs on a permit rule"):
        policy.Policy('@labels("a=b")\nforbid(principal, action, resource);')
    p = policy.Policy('permit(principal in Role::"auditors", action in Action::"read", resource);')
    assert p.roles() == {"auditors"}


def test_decisions_name_their_rules_and_the_principal() -> None:
    p = policy.Policy('''
@id("blue-team")
permit(principal in UnixGroup::"blue", action in Action::"container", resource) unless { context.escalates };
@id("no-priv")
forbid(principal, action, resource) when { context.privileged };
permit(principal in TlsUnit::"ops", action == Action::"system.info", resource);
''')
    ctx = policy.neutral_context()
    assert p.decide(policy.Query(ALICE, "container.list")).rules == ("blue-team",)
    d = p.decide(policy.Query(ALICE, "container.create", "Container", "new", context={**ctx, "privileged": True,
                                                                                       "escalates": True},
                              neutral=False))
    assert not d.allowed and d.rules == ("no-priv",)
    assert d.message == "authorization denied by berth policy: rule no-priv forbids container.create for unix:alice(1000)"
    d = p.decide(policy.Query(ALICE, "image.list"))
    assert not d.allowed and d.message.endswith("no rule permits image.list for unix:alice(1000)")
    assert p.decide(policy.Query(BOB, "system.info")).rules == ("#3",)
    assert not p.decide(policy.Query(BOB, "system.version")).allowed


def test_unix_principals_by_id_as_well_as_by_name() -> None:
    p = policy.Policy('''
@id("uid-1000") permit(principal, action == Action::"system.version", resource)
  when { principal is UnixUser && principal.uid == 1000 };
@id("gid-2000") permit(principal, action == Action::"system.info", resource)
  when { principal is UnixUser && principal.gids.contains(2000) };
''')
    assert p.decide(policy.Query(ALICE, "system.version")).rules == ("uid-1000",)
    assert p.decide(policy.Query(ALICE, "system.info")).rules == ("gid-2000",)
    assert not p.decide(policy.Query(BOB, "system.version")).allowed  # a TLS client has no uid


def test_labels_are_forced_by_the_rule_that_permits_a_create_and_scope_other_actions() -> None:
    p = policy.Policy('''
@id("ops") @labels("team=ops,env=ci")
permit(principal in TlsUnit::"ops", action in Action::"container", resource)
  when { resource.hasTag("team") && resource.getTag("team") == "ops" };
''')
    d = p.decide(policy.Query(BOB, "container.create", "Container", "new", {"team": "dev"}, neutral=False))
    assert d.allowed and dict(d.labels) == {"team": "ops", "env": "ci"}
    assert p.decide(policy.Query(BOB, "container.stop", "Container", "c1", {"team": "ops"})).allowed
    assert not p.decide(policy.Query(BOB, "container.stop", "Container", "c2", {"team": "dev"})).allowed
    assert not p.decide(policy.Query(ALICE, "container.create", "Container", "new", neutral=False)).allowed


def test_neutral_decisions_are_cached_per_caller_not_per_process() -> None:
    p = policy.Policy('permit(principal == UnixUser::"alice", action, resource);')
    a1 = policy.Subject(Identity("unix", user="alice", uid=1000, gid=1000, pid=10))
    a2 = policy.Subject(Identity("unix", user="alice", uid=1000, gid=1000, pid=11))
    first = p.decide(policy.Query(a1, "system.ping"))
    assert p.decide(policy.Query(a2, "system.ping")) is first
    other = policy.Subject(Identity("unix", user="mallory", uid=1001, gid=1001, pid=10))
    assert not p.decide(policy.Query(other, "system.ping")).allowed


def _gate(tmp_path: object, sockets: tuple[str, ...] = ()) -> Gate:
    none = lambda ref: None  # noqa: E731
    return Gate(None, {}, Resolver(container=none, exec_container=none, image=none, network=none, volume=none,
                                   host_binds=lambda ref: ["/srv/shared"], create_body=lambda ref: None),
                sockets, lambda m, p: None)


def test_the_context_reads_a_body_as_the_create_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sock_dir = tmp_path / "run"
    sock_dir.mkdir()
    link = tmp_path / "innocent"
    os.symlink(sock_dir, link)
    sockets = (str(sock_dir / "berth.sock"),)

    def context(body: dict) -> tuple[dict, dict]:  # type: ignore[type-arg]
        return create_context(body, lambda ref: ["/srv/shared"], sockets)

    ctx, labels = context({"image": "bb", "labels": {"a": "b"}, "hostconfig": {
        "privileged": False, "binds": [f"{link}:/x:ro", "named:/data"],
        "mounts": [{"type": "bind", "source": "/etc"}, {"Type": "tmpfs", "Target": "/t"}],
        "capadd": ["net_admin", "CAP_SYS_TIME"], "pidmode": "host", "volumesfrom": ["other:ro"],
        "maskedpaths": []}})
    assert labels == {"a": "b"}
    assert set(ctx["host_paths"]) == {str(link), str(sock_dir), "/etc", "/srv/shared"}
    assert "/" in ctx["host_path_prefixes"] and str(tmp_path) in ctx["host_path_prefixes"]
    assert ctx["daemon_socket"] and ctx["escalates"] and ctx["paths_unconfined"]
    assert ctx["cap_add"] == ["NET_ADMIN", "SYS_TIME"] and ctx["pid_mode"] == "host"
    quiet, _ = context({"Image": "bb", "HostConfig": {"Binds": ["named:/data"]}})
    assert not quiet["escalates"] and quiet["host_paths"] == []
    # the exact spelling wins over another one for the same field, as in the create
    both, _ = context({"Image": "bb", "HostConfig": {"privileged": False, "Privileged": True}})
    assert both["privileged"]


def test_the_documented_recipes_validate() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    p = policy.check_file(os.path.join(here, "..", "..", "..", "docs", "examples", "policy.cedar"))
    assert {n for n in p.names.values()} >= {"blue-team", "no-daemon-socket", "ci", "admins"}
    ci = policy.Subject(Identity("unix", user="runner", uid=1500, gid=1500), ("ci",), (1500,))
    ctx = {**policy.neutral_context(), "image": "registry.example.com/app:1"}
    d = p.decide(policy.Query(ci, "container.create", "Container", "new", context=ctx, neutral=False))
    assert d.allowed and dict(d.labels) == {"ci": "true"}
    d = p.decide(policy.Query(ci, "container.create", "Container", "new", context={**ctx, "image": "evil/app"},
                              neutral=False))
    assert not d.allowed
