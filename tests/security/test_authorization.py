"""Issue #11, points 1, 5 and 6: who may do what. Real callers only: the docker CLI run as throwaway
unix users in and out of the groups a policy names, the docker CLI and docker-py over mutual TLS with
certificates from ``berth pki`` (alice read-only, bob an operator, carol revoked), curl for the
spellings the docker CLI never sends; a read-only listener; SIGHUP reloads; ``berth policy``."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import require_root
from tests.lib import rawhttp
from tests.lib.clis import DOCKER, base_env, berth
from tests.lib.clis import docker as docker_cli
from tests.lib.daemon import Berthd, free_port, public_tmpdir
from tests.lib.images import busybox_rootfs_tar
from tests.lib.users import as_user, make_group, make_user


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed on this machine")


def write_policy(d: Berthd, text: str) -> str:
    path = os.path.join(d.root, "policy.cedar")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path


def load_bb(d: Berthd, sock: str | None = None) -> None:
    r = rawhttp.request(sock or d.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest", body=busybox_rootfs_tar())
    assert r.status == 200, r.body


def cli(d: Berthd, *args: str) -> subprocess.CompletedProcess[str]:
    return docker_cli("-H", d.url, *args)


ROOT_RULE = '@id("root")\npermit(principal == UnixUser::"root", action, resource);\n'


def test_unix_users_get_what_their_groups_are_permitted_and_no_more(make_berthd, cleanup):
    sock_group, ops = make_group(cleanup), make_group(cleanup)
    mon, mon_home = make_user(cleanup, groups=(sock_group,))
    op, op_home = make_user(cleanup, groups=(sock_group, ops))
    d = make_berthd(args=["-G", sock_group])
    d.config = {"authorization-policy": write_policy(d, ROOT_RULE + f'''
@id("monitoring")
permit(principal == UnixUser::"{mon}", action in Action::"read-only", resource);
@id("operators")
permit(principal in UnixGroup::"{ops}", action, resource) unless {{ context.escalates }};
@id("no-daemon-socket")
forbid(principal, action, resource) when {{ context.daemon_socket }};
''')}
    d.start()
    load_bb(d)

    def as_(user: str, home: str, *args: str) -> subprocess.CompletedProcess[str]:
        return as_user(user, home, [DOCKER, "-H", d.url, *args])

    # the monitoring user reads, and may not create
    r = as_(mon, mon_home, "ps", "-a")
    assert r.returncode == 0, r.stderr
    r = as_(mon, mon_home, "run", "--rm", "bb", "true")
    uid = int(subprocess.run(["id", "-u", mon], capture_output=True, text=True).stdout)
    assert r.returncode != 0
    assert f"authorization denied by berth policy: no rule permits container.create for unix:{mon}({uid})" in r.stderr

    # the operator runs unprivileged containers
    r = as_(op, op_home, "run", "--rm", "bb", "echo", "hello from an operator")
    assert (r.returncode, r.stdout) == (0, "hello from an operator\n"), r.stderr
    for escalation in (["--privileged"], ["-v", "/etc:/host"], ["--pid", "host"], ["--cap-add", "SYS_ADMIN"],
                       ["--device", "/dev/null:/dev/n"], ["--security-opt", "seccomp=unconfined"],
                       ["--device-cgroup-rule", "b 8:* rwm"], ["--security-opt", "systempaths=unconfined"]):
        r = as_(op, op_home, "run", "--rm", *escalation, "bb", "true")
        assert r.returncode != 0 and "no rule permits container.create" in r.stderr, (escalation, r.stderr)
        assert "the request asks for" in r.stderr
    # Go's JSON decoding ignores case: so does the policy (curl sends what the docker CLI never would)
    body = json.dumps({"image": "bb", "cmd": ["true"], "hostconfig": {"privileged": True}})
    r = as_user(op, op_home, ["curl", "-s", "--unix-socket", d.sock, "-H", "Content-Type: application/json",
                              "-d", body, "http://berth/v1.47/containers/create"])
    assert "no rule permits container.create" in r.stdout and "privileged" in r.stdout, r.stdout
    assert api(d).containers(all=True, filters={"ancestor": "bb"}) == []

    # the daemon's socket is off limits even to root: its directory, or any ancestor of it
    for src in (os.path.dirname(d.sock), "/"):
        r = cli(d, "create", "-v", f"{src}:/x", "bb", "true")
        assert r.returncode != 0, r.stdout
        assert "rule no-daemon-socket forbids container.create for unix:root(0)" in r.stderr
        assert "a bind that exposes the daemon's socket" in r.stderr
    r = cli(d, "run", "--rm", "--privileged", "bb", "true")  # root may do anything else
    assert r.returncode == 0, r.stderr


def test_a_start_is_decided_again_with_the_host_paths_resolved_then(make_berthd):
    """A symlink that pointed somewhere harmless at the create and at the daemon's socket later: the
    start resolves it again and is refused."""
    d = make_berthd()
    d.config = {"authorization-policy": write_policy(d, ROOT_RULE + '''
@id("no-daemon-socket")
forbid(principal, action, resource) when { context.daemon_socket };
''')}
    d.start()
    load_bb(d)
    harmless = public_tmpdir("berth-authz-")
    link = os.path.join(d.root, "link")
    os.symlink(harmless, link)
    try:
        r = cli(d, "create", "--name", "sly", "-v", f"{link}:/x", "bb", "true")
        assert r.returncode == 0, r.stderr
        os.unlink(link)
        os.symlink(os.path.dirname(d.sock), link)
        r = cli(d, "start", "sly")
        assert r.returncode != 0 and "rule no-daemon-socket forbids container.start" in r.stderr, r.stderr
        assert api(d).inspect_container("sly")["State"]["Status"] == "created"
    finally:
        shutil.rmtree(harmless, ignore_errors=True)


def api(d: Berthd) -> docker.APIClient:
    return docker.APIClient(base_url=d.url, version="1.47", timeout=60)


# ---- TLS: alice, bob, carol ------------------------------------------------------------------------
@pytest.fixture
def pki_root() -> Iterator[str]:
    root = public_tmpdir("berth-authz-pki-")

    def pki(*args: str) -> None:
        r = berth("pki", *args)
        assert r.returncode == 0, r.stderr

    pki("init", "--dir", f"{root}/ca")
    pki("server", "--dir", f"{root}/ca", "--cn", "localhost", "--san", "IP:127.0.0.1", "--out", f"{root}/server")
    pki("client", "--dir", f"{root}/ca", "--cn", "alice", "--out", f"{root}/alice")
    pki("client", "--dir", f"{root}/ca", "--cn", "bob", "--org", "acme", "--ou", "ops", "--out", f"{root}/bob")
    pki("client", "--dir", f"{root}/ca", "--cn", "carol", "--org", "acme", "--ou", "ops", "--out", f"{root}/carol")
    pki("revoke", "--dir", f"{root}/ca", f"{root}/carol/cert.pem")
    yield root
    shutil.rmtree(root, ignore_errors=True)


TLS_POLICY = ROOT_RULE + '''
@id("readers")
permit(principal == TlsClient::"alice", action in Action::"read-only", resource);
@id("ops-team") @labels("team=ops")
permit(principal in TlsUnit::"ops", action in Action::"container", resource)
  when { resource.hasTag("team") && resource.getTag("team") == "ops" }
  unless { context.escalates };
@id("ops-read")
permit(principal in TlsUnit::"ops", action in Action::"read-only", resource)
  when { resource is Daemon || (resource.hasTag("team") && resource.getTag("team") == "ops") };
'''


def start_tls(make_berthd, root: str, policy: str) -> tuple[Berthd, int]:  # type: ignore[no-untyped-def]
    port = free_port()
    d = make_berthd()
    d.hosts = [f"unix://{d.sock}", f"tcp://127.0.0.1:{port}"]
    d.args = ["--tlsverify", "--tlscacert", f"{root}/ca/ca.pem", "--tlscert", f"{root}/server/cert.pem",
              "--tlskey", f"{root}/server/key.pem", "--tlscrl", f"{root}/ca/crl.pem"]
    d.config = {"authorization-policy": write_policy(d, policy)}
    d.start(wait_for=[port])
    load_bb(d)
    return d, port


def tls_docker(port: int, cert_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(DOCKER_HOST=f"tcp://127.0.0.1:{port}", DOCKER_CERT_PATH=cert_dir, DOCKER_TLS_VERIFY="1")
    return docker_cli(*args, env=env)


def tls_api(port: int, cert_dir: str) -> docker.APIClient:
    tls = docker.tls.TLSConfig(client_cert=(f"{cert_dir}/cert.pem", f"{cert_dir}/key.pem"),
                               ca_cert=f"{cert_dir}/ca.pem", verify=True)
    c = docker.APIClient(base_url=f"https://127.0.0.1:{port}", tls=tls, version="1.47", timeout=60)
    c.trust_env = False  # else requests lets REQUESTS_CA_BUNDLE (set on these machines) replace our CA
    return c


def test_tls_clients_alice_reads_bob_runs_his_teams_containers_carol_is_revoked(make_berthd, pki_root):
    d, port = start_tls(make_berthd, pki_root, TLS_POLICY)
    # alice: read-only
    r = tls_docker(port, f"{pki_root}/alice", "ps")
    assert r.returncode == 0, r.stderr
    r = tls_docker(port, f"{pki_root}/alice", "run", "--rm", "bb", "true")
    assert r.returncode != 0
    assert "authorization denied by berth policy: no rule permits container.create for tls:CN=alice" in r.stderr

    # bob (OU=ops), with docker-py: what he creates carries his team's label, whatever he asked for
    bob = tls_api(port, f"{pki_root}/bob")
    cid = bob.create_container("bb", ["sleep", "30"], labels={"team": "dev", "purpose": "test"})["Id"]
    assert bob.inspect_container(cid)["Config"]["Labels"] == {"team": "ops", "purpose": "test"}
    bob.start(cid)
    bob.kill(cid)
    with pytest.raises(docker.errors.APIError) as err:
        bob.create_container("bb", "true", host_config=bob.create_host_config(privileged=True))
    assert err.value.status_code == 403 and "tls:CN=bob,O=acme,OU=ops" in str(err.value)
    # a container of another team (made by root over the unix socket): he neither sees nor touches it
    other = api(d).create_container("bb", ["sleep", "30"], labels={"team": "dev"})["Id"]
    assert [c["Id"] for c in bob.containers(all=True)] == [cid]  # the list holds what he may list
    assert {c["Id"] for c in api(d).containers(all=True)} == {cid, other}
    r = tls_docker(port, f"{pki_root}/alice", "ps", "-a", "-q", "--no-trunc")
    assert set(r.stdout.split()) == {cid, other}, r.stderr  # alice's read-only rule is not scoped
    with pytest.raises(docker.errors.APIError) as err:
        bob.inspect_container(other)
    assert err.value.status_code == 403 and "no rule permits container.inspect" in str(err.value)
    # and his event stream leaves out what happens to it
    until = int(time.time()) + 1
    seen = {e["Actor"]["ID"] for e in bob.events(since=0, until=until, decode=True) if e["Type"] == "container"}
    assert seen == {cid}, seen
    everyone = {e["Actor"]["ID"] for e in api(d).events(since=0, until=until, decode=True) if e["Type"] == "container"}
    assert everyone == {cid, other}
    with pytest.raises(docker.errors.APIError) as err:
        bob.start(other)
    assert err.value.status_code == 403 and "no rule permits container.start" in str(err.value)
    with pytest.raises(docker.errors.APIError) as err:
        bob.remove_container(other, force=True)
    assert err.value.status_code == 403
    bob.remove_container(cid, force=True)

    # carol: same team, revoked: refused at the handshake
    r = tls_docker(port, f"{pki_root}/carol", "ps")
    assert r.returncode != 0
    assert "TLS connection refused: a revoked client certificate" in d.log() and "CN=carol" in d.log()


# ---- restricted sockets -----------------------------------------------------------------------------
def test_a_read_only_listener_lists_and_inspects_but_cannot_create_exec_or_read_files(make_berthd, cleanup):
    monitor = make_group(cleanup)
    d = make_berthd()
    ro = os.path.join(d.root, "ro.sock")
    d.hosts = [f"unix://{d.sock}", f"unix://{ro}"]
    d.config = {"listener-policies": {f"unix://{ro}": {"role": "read-only", "mode": "0666", "group": monitor}}}
    d.start()
    st = os.stat(ro)
    assert stat.S_IMODE(st.st_mode) == 0o666 and st.st_gid == int(subprocess.run(
        ["getent", "group", monitor], capture_output=True, text=True).stdout.split(":")[2])
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o660
    assert "every caller who reaches a socket is admin except on listeners with a role" in d.log()
    load_bb(d)
    r = cli(d, "run", "-d", "--name", "svc", "bb", "sh", "-c", "echo up; echo secret > /s; sleep 60")
    assert r.returncode == 0, r.stderr

    def ro_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return docker_cli("-H", f"unix://{ro}", *args)

    assert "svc" in ro_cli("ps").stdout
    assert ro_cli("inspect", "--format", "{{.State.Status}}", "svc").stdout.strip() == "running"
    assert ro_cli("logs", "svc").stdout == "up\n"
    assert ro_cli("images", "-q").stdout.strip() != ""
    assert ro_cli("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.47"
    events = rawhttp.request(ro, "GET", f"/events?since=0&until={int(time.time()) + 1}")
    assert events.status == 200 and b'"start"' in events.body
    for args in (["run", "--rm", "bb", "true"], ["exec", "svc", "cat", "/s"], ["cp", "svc:/s", "-"],
                 ["export", "svc"], ["stop", "svc"], ["rm", "-f", "svc"], ["save", "bb"], ["network", "create", "n1"]):
        r = ro_cli(*args)
        assert r.returncode != 0, args
        assert f"the listener unix://{ro} has the role read-only, which does not allow" in r.stderr, (args, r.stderr)
    attach = rawhttp.request(ro, "GET", "/containers/svc/attach/ws?stream=1&stdout=1")
    assert attach.status == 403
    assert cli(d, "exec", "svc", "cat", "/s").stdout == "secret\n"  # the other listener is not restricted


def test_listener_policies_must_name_a_listener_and_a_known_role(make_berthd):
    d = make_berthd(config={"listener-policies": {"unix:///run/berth-nowhere.sock": "read-only"}})
    code, out = d.run_to_exit()
    assert code != 0 and "listener-policies names unix:///run/berth-nowhere.sock, which is not one of this " \
                         "daemon's listeners" in out
    d = make_berthd()
    d.config = {"listener-policies": {f"unix://{d.sock}": "auditors"}}
    code, out = d.run_to_exit()
    assert code != 0 and "has the role 'auditors', which is neither built in (admin, read-only) nor named in " \
                         "the authorization policy" in out
    d = make_berthd()
    d.config = {"listener-policies": {f"unix://{d.sock}": "auditors"},
                "authorization-policy": write_policy(d, ROOT_RULE + '''
permit(principal in Role::"auditors", action in Action::"read", resource);''')}
    d.start()  # a role the policy names
    assert rawhttp.request(d.sock, "GET", "/containers/json").status == 200


# ---- reload, bad files, the CLI ----------------------------------------------------------------------
def test_sighup_reloads_the_policy_and_a_bad_one_keeps_the_running_one(make_berthd):
    d = make_berthd()
    path = write_policy(d, ROOT_RULE + '@id("no-volumes")\nforbid(principal, action == Action::"volume.create", '
                                       "resource);\n")
    d.config = {"authorization-policy": path}
    d.start()
    assert cli(d, "volume", "create", "v1").returncode != 0
    write_policy(d, ROOT_RULE)
    d.reload()
    assert "reloaded the authorization policy" in d.log()
    r = cli(d, "volume", "create", "v1")
    assert r.returncode == 0, r.stderr
    write_policy(d, ROOT_RULE + "forbid(principal, action, resource) when { context.no_such_thing };\n")
    d.reload()
    assert "authorization policy reload failed, keeping the policy in use" in d.log()
    assert "attribute `no_such_thing` in context not found" in d.log()
    assert cli(d, "volume", "create", "v2").returncode == 0


def test_a_policy_that_cannot_be_used_stops_the_daemon_and_none_is_said_at_start(make_berthd, berthd):
    d = make_berthd()
    d.config = {"authorization-policy": write_policy(d, "permit(principal, action resource);")}
    code, out = d.run_to_exit()
    assert code != 0 and "the rule at line 1: unexpected token `resource`" in out
    d = make_berthd(args=["--authorization-policy", "/nonexistent/policy.cedar"])
    code, out = d.run_to_exit()
    assert code != 0 and "cannot read the authorization policy /nonexistent/policy.cedar" in out
    assert "authorization: no policy (authorization-policy): every caller who reaches a socket is admin" in berthd.log()


def test_berth_policy_check_and_explain(make_berthd, tmp_path):
    good = tmp_path / "good.cedar"
    good.write_text(ROOT_RULE + TLS_POLICY.replace(ROOT_RULE, "") + '''
@id("no-privileged")
forbid(principal, action == Action::"container.create", resource) when { context.privileged };
''')
    r = berth("policy", "check", str(good))
    assert (r.returncode, r.stdout.strip()) == (0, f"{good}: 5 rules, valid"), r.stderr
    bad = tmp_path / "bad.cedar"
    bad.write_text(ROOT_RULE + 'permit(principal, action == Action::"container.creat", resource);\n')
    r = berth("policy", "check", str(bad))
    assert r.returncode == 1 and "container.creat" in r.stderr, r.stderr

    d = make_berthd()
    d.config = {"authorization-policy": str(good)}
    d.start()
    body = json.dumps({"Image": "bb", "HostConfig": {"Privileged": True}})
    r = berth("-H", d.url, "policy", "explain", "--cn", "bob", "--ou", "ops", "POST", "/containers/create", input=body)
    assert r.returncode == 1, r.stderr
    assert "DENY  container.create by tls:CN=bob,OU=ops" in r.stdout and "decided by: no-privileged" in r.stdout
    r = berth("-H", d.url, "policy", "explain", "--cn", "bob", "--ou", "ops", "POST", "/containers/create",
              input=json.dumps({"Image": "bb"}))
    assert r.returncode == 0 and "decided by: ops-team" in r.stdout and "team=ops" in r.stdout, r.stdout
    r = berth("-H", d.url, "policy", "explain", "--as", "root", "--policy", str(bad.parent / "good.cedar"),
              "--format", "json", "GET", "/v1.47/containers/json", input="")
    assert r.returncode == 0 and json.loads(r.stdout)["Rules"] == ["root"], r.stdout
