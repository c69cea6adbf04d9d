"""Files berth keeps on the host, attacked by a local user who is not in the docker group: the
database holds every container's environment (secrets), and a container can plant a setuid-root
binary in a volume or in its own layer (CVE-2021-41091)."""

from __future__ import annotations

import os
import stat

import pytest

from tests.lib.users import as_user, make_user
from tests.security.lib import load_image, run


@pytest.mark.needs_root
def test_local_user_reads_no_secret_and_runs_no_planted_setuid(berthd, cleanup):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = berthd
    load_image(d, "bb-suid", [], {})
    assert run(d, "run", "-d", "--name", "planter", "-e", "SECRET=hunter2", "-v", "planted:/data", "bb-suid", "sh",
               "-c", "cp /bin/busybox /data/sbb && chmod 4755 /data/sbb && cp /bin/busybox /sbb && chmod 4755 /sbb "
               "&& touch /ready && sleep 300").returncode == 0
    data_root = os.path.join(d.root, "data")
    db = os.path.join(data_root, "berth.db")
    volume = run(d, "volume", "inspect", "-f", "{{.Mountpoint}}", "planted").stdout.strip()
    upper = run(d, "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "planter").stdout.strip()
    merged = run(d, "inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", "planter").stdout.strip()
    for _ in range(100):
        if os.path.exists(os.path.join(upper, "ready")):
            break
        import time

        time.sleep(0.05)
    assert stat.S_IMODE(os.stat(data_root).st_mode) == 0o710
    for path in (db, db + "-wal"):
        if os.path.exists(path):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert os.stat(os.path.join(volume, "sbb")).st_mode & stat.S_ISUID  # the plant is there...
    user, home = make_user(cleanup)
    r = as_user(user, home, ["cat", db])
    assert r.returncode != 0 and "hunter2" not in r.stdout
    for planted in (os.path.join(volume, "sbb"), os.path.join(upper, "sbb"), os.path.join(merged, "sbb")):
        r = as_user(user, home, [planted, "id", "-u"])  # ...but no local user can reach it
        assert r.returncode != 0 and r.stdout.strip() != "0", (planted, r.stdout, r.stderr)
        assert "ermission denied" in r.stderr, r.stderr
