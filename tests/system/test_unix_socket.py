"""The unix socket: mode 0660, owner root, group from -G; who may connect; stale and live sockets."""

from __future__ import annotations

import grp
import os
import shutil
import socket
import stat

import pytest

from tests.conftest import require_root
from tests.lib.clis import DOCKER
from tests.lib.users import as_user, make_group, make_user


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def test_mode_owner_and_group(make_berthd, cleanup):
    group = make_group(cleanup)
    d = make_berthd(args=["-G", group]).start()
    st = os.stat(d.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0
    assert st.st_gid == grp.getgrnam(group).gr_gid


def test_user_outside_group_refused_inside_accepted(make_berthd, cleanup):
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed on this machine")
    group = make_group(cleanup)
    d = make_berthd(args=["-G", group]).start()
    insider, ihome = make_user(cleanup, groups=(group,))
    outsider, ohome = make_user(cleanup)
    ok = as_user(insider, ihome, [DOCKER, "-H", d.url, "version", "--format", "{{.Server.APIVersion}}"])
    assert ok.returncode == 0 and ok.stdout.strip() == "1.47", ok.stderr
    no = as_user(outsider, ohome, [DOCKER, "-H", d.url, "version"])
    assert no.returncode != 0
    assert "permission denied" in no.stderr


def test_default_group_missing_falls_back_to_root_with_warning(make_berthd):
    """Run berthd in a private mount namespace whose /etc/group has no "docker" group. The whole of
    /etc is replaced by a copy: a bind mount over /etc/group alone is lost when another test's
    groupadd renames a new /etc/group into place meanwhile."""
    d = make_berthd()
    etc = os.path.join(d.root, "etc")
    for attempt in range(5):  # other workers' useradd/groupdel replace files in /etc while it is copied
        try:
            shutil.copytree("/etc", etc, symlinks=True, ignore_dangling_symlinks=True,
                            ignore=shutil.ignore_patterns("*.lock", "*.tmp*"))
            break
        except shutil.Error:
            shutil.rmtree(etc, ignore_errors=True)
            if attempt == 4:
                raise
    with open(os.path.join(etc, "group")) as src:
        lines = [line for line in src if not line.startswith("docker:")]
    with open(os.path.join(etc, "group"), "w") as dst:
        dst.writelines(lines)
    d.start(prefix=["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                    f'mount --bind "{etc}" /etc && exec "$0" "$@"'])
    assert os.stat(d.sock).st_gid == 0
    assert "group docker not found" in d.log()


def test_explicit_missing_group_refuses_to_start(make_berthd):
    rc, out = make_berthd(args=["-G", "no-such-group-xyz"]).run_to_exit()
    assert rc == 1 and "group 'no-such-group-xyz' does not exist" in out


def test_stale_socket_is_replaced(make_berthd):
    d = make_berthd()
    os.makedirs(os.path.dirname(d.sock), exist_ok=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(d.sock)  # bound, never listening, then abandoned: what a crashed daemon leaves
    s.close()
    d.start()
    assert "removed stale socket" in d.log()


def test_live_socket_makes_second_daemon_refuse(make_berthd):
    first = make_berthd().start()
    second = make_berthd()
    second.hosts = [f"unix://{first.sock}"]
    rc, out = second.run_to_exit()
    assert rc == 1 and "another daemon is already serving on it" in out
    from tests.lib.daemon import unix_ping

    assert unix_ping(first.sock)  # the first daemon is untouched


def test_path_that_is_not_a_socket_is_left_alone(make_berthd):
    d = make_berthd()
    with open(d.sock, "w") as f:
        f.write("precious")
    rc, out = d.run_to_exit()
    assert rc == 1 and "is not a socket" in out
    assert open(d.sock).read() == "precious"


def test_second_daemon_with_same_pidfile_refuses(make_berthd):
    first = make_berthd().start()
    second = make_berthd()
    second.args = ["--pidfile", first.pidfile]
    rc, out = second.run_to_exit()
    assert rc == 1 and "pid file found" in out
