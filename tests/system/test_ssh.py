"""ssh://: a key-only sshd on loopback; the remote end runs ``berth system dial-stdio`` (or falls
back to ``docker system dial-stdio``), and the real docker CLI's -H ssh:// reaches berthd too.

The client's ssh reads its settings from a test ssh_config through a wrapper first on PATH (both
docker and berth run the ``ssh`` they find on PATH), so nothing of root's ~/.ssh is read or written.
Each authorized key sets the remote PATH, which decides what runs there:
  berth-remote:  a fake ``docker`` that fails comes first, then berth → success proves berth ran;
  docker-remote: no berth at all → success proves the fallback to docker's dial-stdio;
  berth-as-docker: ``docker`` is berth → the docker CLI's own ssh:// works with a berth-only host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.conftest import require_root
from tests.lib.clis import DOCKER, base_env, berth, docker
from tests.lib.daemon import BERTH, free_port, public_tmpdir

SSHD = "/usr/sbin/sshd"


def _keygen(path: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return open(path + ".pub").read().strip()


@pytest.fixture
def ssh_env(berthd, cleanup):  # type: ignore[no-untyped-def]
    return start_sshd(cleanup, berthd.url, ("root",))


def start_sshd(cleanup, url: str, users: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """A key-only sshd on loopback letting ``users`` in, each key sending them to berthd at ``url``."""
    require_root()
    if not os.path.exists(SSHD) or not shutil.which("ssh"):
        pytest.skip("openssh-server/openssh-client are not installed")
    w = cleanup.path(public_tmpdir("berth-ssh-"))
    if not os.path.isdir("/run/sshd"):  # sshd's privilege-separation directory
        os.makedirs("/run/sshd", mode=0o755)
        cleanup.add("/run/sshd", lambda: shutil.rmtree("/run/sshd", ignore_errors=True))
    host_pub = _keygen(f"{w}/host_key")
    assert host_pub
    venv_bin = os.path.dirname(BERTH)
    fake = f"{w}/fakebin"
    os.makedirs(fake)
    with open(f"{fake}/docker", "w") as f:
        f.write("#!/bin/sh\necho 'fake docker: berth should have been used' >&2\nexit 42\n")
    os.chmod(f"{fake}/docker", 0o755)
    as_docker = f"{w}/asdocker"
    os.makedirs(as_docker)
    os.symlink(BERTH, f"{as_docker}/docker")
    paths = {
        "berth-remote": f"{fake}:{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "docker-remote": "/usr/local/bin:/usr/bin:/bin",
        "berth-as-docker": f"{as_docker}:/usr/bin:/bin",
    }
    port = free_port()
    auth, client_cfg = [], []
    for alias, path in paths.items():
        pub = _keygen(f"{w}/{alias}")
        auth.append(f'environment="DOCKER_HOST={url}",environment="PATH={path}" {pub}')
        client_cfg.append(f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {w}/{alias}\n"
                          "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
                          "  BatchMode yes\n  LogLevel ERROR\n")
    open(f"{w}/authorized_keys", "w").write("\n".join(auth) + "\n")
    open(f"{w}/ssh_config", "w").write("\n".join(client_cfg))
    open(f"{w}/sshd_config", "w").write(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {w}/host_key\nPidFile {w}/sshd.pid\n"
        f"AuthorizedKeysFile {w}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        f"AllowUsers {' '.join(users)}\nPermitUserEnvironment yes\nX11Forwarding no\nAllowTcpForwarding no\n"
        "Subsystem sftp internal-sftp\n")  # scp speaks SFTP
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", f"{w}/sshd_config"], stdout=open(f"{w}/sshd.log", "wb"),
                            stderr=subprocess.STDOUT)
    cleanup.process(proc, "sshd")
    deadline = time.time() + 10
    import socket

    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("sshd exited: " + open(f"{w}/sshd.log").read())
            time.sleep(0.05)
    wrapper_dir = f"{w}/clientbin"
    os.makedirs(wrapper_dir)
    with open(f"{wrapper_dir}/ssh", "w") as f:
        f.write(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {w}/ssh_config "$@"\n')
    os.chmod(f"{wrapper_dir}/ssh", 0o755)
    env = base_env(PATH=f"{wrapper_dir}:{os.environ['PATH']}")
    return env, w


def test_berth_over_ssh_runs_berth_dial_stdio(ssh_env):
    env, w = ssh_env
    r = berth("-H", "ssh://root@berth-remote", "version", "--format", "{{.Server.ApiVersion}}", env=env)
    assert r.returncode == 0, r.stderr + open(f"{w}/sshd.log").read()
    assert r.stdout.strip() == "1.47"
    r = berth("info", "--format", "{{.Name}}", env={**env, "DOCKER_HOST": "ssh://root@berth-remote"})
    assert r.returncode == 0, r.stderr


def test_berth_over_ssh_falls_back_to_docker_dial_stdio(ssh_env):
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed (needed on the remote end for the fallback)")
    env, _ = ssh_env
    r = berth("-H", "ssh://root@docker-remote", "version", "--format", "{{.Server.ApiVersion}}", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1.47"


def test_docker_cli_over_ssh_to_a_berth_host(ssh_env):
    env, _ = ssh_env
    for alias in ("docker-remote", "berth-as-docker"):
        r = docker("-H", f"ssh://root@{alias}", "version", "--format", "{{.Server.APIVersion}}", env=env)
        assert r.returncode == 0, (alias, r.stderr)
        assert r.stdout.strip() == "1.47"


def test_berth_context_with_ssh_host(ssh_env):
    env, _ = ssh_env
    assert berth("context", "create", "remote", "--docker", "host=ssh://root@berth-remote", env=env).returncode == 0
    r = berth("--context", "remote", "version", "--format", "{{.Server.Version}}", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0", r.stderr


def test_ssh_failure_is_reported(ssh_env):
    env, _ = ssh_env
    r = berth("-H", "ssh://nobody@127.0.0.1:1", "version", env=env)
    assert r.returncode == 1 and "over ssh" in r.stderr


def test_over_ssh_the_remote_users_identity_is_what_the_policy_decides_on(make_berthd, cleanup):
    """docker -H ssh://alice@host: the remote ``dial-stdio`` connects to berthd's socket as alice, so
    SO_PEERCRED names her, and the authorization policy decides on her (issue #11)."""
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed on this machine")
    from tests.lib.users import make_group, make_user

    group = make_group(cleanup)
    alice, _ = make_user(cleanup, groups=(group,))
    d = make_berthd(args=["-G", group])
    policy = os.path.join(d.root, "policy.cedar")
    with open(policy, "w") as f:
        f.write('permit(principal == UnixUser::"root", action, resource);\n'
                f'@id("alice-reads") permit(principal == UnixUser::"{alice}", action in Action::"read-only", resource);\n')
    d.config = {"authorization-policy": policy}
    d.start()
    env, w = start_sshd(cleanup, d.url, ("root", alice))
    # docker-remote: the remote end is the real docker CLI's dial-stdio, run as alice (the venv's berth
    # lives under root's home, which alice cannot traverse)
    r = docker("-H", f"ssh://{alice}@docker-remote", "ps", env=env)
    assert r.returncode == 0, r.stderr + open(f"{w}/sshd.log").read()
    r = docker("-H", f"ssh://{alice}@docker-remote", "volume", "create", "v1", env=env)
    assert r.returncode != 0
    uid = int(subprocess.run(["id", "-u", alice], capture_output=True, text=True).stdout)
    assert f"no rule permits volume.create for unix:{alice}({uid})" in r.stderr, r.stderr
    r = docker("-H", "ssh://root@docker-remote", "volume", "create", "v1", env=env)
    assert r.returncode == 0, r.stderr
