"""Which cgroup layout the host has, and the one fix crun needs on hybrid hosts.

crun refuses hybrid mode (v1 controllers plus a cgroup2 mount) while the cgroup2 hierarchy still
holds a controller ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2").
On such hosts ``hugetlb`` is often the only controller left on cgroup2; mounting it as a v1
hierarchy moves it off cgroup2, after which crun runs (runc runs either way).
"""

from __future__ import annotations

import os

from berth.errors import System
from berth.linux.mount import mount

UNIFIED = "/sys/fs/cgroup/unified"


def layout() -> str:
    """"v2" (unified), "hybrid" (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) or "v1"."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2"
    if os.path.exists(os.path.join(UNIFIED, "cgroup.controllers")):
        return "hybrid"
    return "v1"


def cgroup2_controllers() -> list[str]:
    try:
        with open(os.path.join(UNIFIED, "cgroup.controllers")) as f:
            return f.read().split()
    except OSError:
        return []


def fix_hybrid_for_crun() -> str | None:
    """On a hybrid host whose cgroup2 holds controllers, mount them as v1 hierarchies so crun works.
    Returns a message saying what was done, or None when nothing was needed."""
    if layout() != "hybrid":
        return None
    moved = []
    for ctrl in cgroup2_controllers():
        target = f"/sys/fs/cgroup/{ctrl}"
        os.makedirs(target, exist_ok=True)
        try:
            mount("cgroup", target, "cgroup", 0, ctrl)
        except System as exc:
            raise System(f"cgroups are hybrid and cgroup2 still holds {ctrl!r}, which crun refuses; mounting it as "
                         f"a v1 hierarchy at {target} failed: {exc.message}. Use --default-runtime=runc, or mount "
                         f"it yourself: mount -t cgroup -o {ctrl} cgroup {target}") from None
        moved.append(ctrl)
    if not moved:
        return None
    return (f"cgroups are hybrid and cgroup2 held {', '.join(moved)}, which crun refuses: mounted "
            + ", ".join(f"/sys/fs/cgroup/{c}" for c in moved) + " as v1 hierarchies (what `mount -t cgroup -o "
            + moved[0] + " cgroup /sys/fs/cgroup/" + moved[0] + "` does)")
