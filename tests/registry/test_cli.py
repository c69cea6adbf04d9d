"""berth pull | push | login | logout against a registry with Basic auth: credentials in docker's own
config.json (the docker CLI uses what berth login wrote, and the other way round), and through a
credential helper named by credsStore."""

from __future__ import annotations

import json
import os

from tests.lib.cleanup import Cleanup
from tests.lib.clis import base_env, berth, docker
from tests.lib.daemon import Berthd, public_tmpdir
from tests.lib.registry import Registry


def test_login_pull_push_logout_with_docker_config_and_a_helper(berthd: Berthd, locked: Registry,
                                                                 cleanup: Cleanup) -> None:
    reg = locked
    home = cleanup.path(public_tmpdir("berth-cfg-"))
    env = base_env(DOCKER_CONFIG=home, DOCKER_HOST=berthd.url)
    name = f"{reg.host}/app:1"
    r = berth("pull", name, env=env, timeout=60)
    assert r.returncode != 0 and "no basic auth credentials" in r.stderr, r.stderr
    r = berth("login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Login Succeeded", r.stderr
    assert "stored unencrypted" in r.stderr
    assert json.load(open(f"{home}/config.json"))["auths"][reg.host]["auth"]
    assert os.stat(f"{home}/config.json").st_mode & 0o777 == 0o600
    r = berth("pull", name, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == name, r.stdout + r.stderr
    r = docker("push", name, env=env, timeout=60)  # the docker CLI uses what berth login wrote
    assert r.returncode == 0, r.stderr
    assert berth("tag", name, f"{reg.host}/copy:1", env=env).returncode == 0
    r = berth("push", f"{reg.host}/copy:1", env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    r = berth("logout", reg.host, env=env)
    assert r.returncode == 0 and f"Removing login credentials for {reg.host}" in r.stdout
    assert reg.host not in json.load(open(f"{home}/config.json")).get("auths", {})

    # a credential helper (credsStore): the secret never lands in config.json
    bindir = cleanup.path(public_tmpdir("berth-helper-"))
    with open(f"{bindir}/docker-credential-filestore", "w") as f:
        f.write(f"""#!/bin/sh
store={bindir}/store.json
case "$1" in
  store) cat > "$store" ;;
  get) read server; if [ -f "$store" ]; then cat "$store"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) rm -f "$store" ;;
esac
""")
    os.chmod(f"{bindir}/docker-credential-filestore", 0o755)
    with open(f"{home}/config.json", "w") as f:
        json.dump({"credsStore": "filestore"}, f)
    henv = {**env, "PATH": f"{bindir}:{os.environ['PATH']}"}
    r = berth("login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n", env=henv)
    assert r.returncode == 0 and "stored unencrypted" not in r.stderr, r.stderr
    assert "s3cret" not in open(f"{home}/config.json").read()
    assert json.load(open(f"{bindir}/store.json"))["Secret"] == "s3cret"
    assert berth("rmi", name, env=henv).returncode == 0
    r = berth("pull", "-q", name, env=henv, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == name, r.stderr
    r = berth("logout", reg.host, env=henv)
    assert r.returncode == 0 and not os.path.exists(f"{bindir}/store.json")
