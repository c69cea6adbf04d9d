"""The OCI spec, built whole in one pass from typed inputs (no runtime, no process): namespaces and
/dev/shm from the namespace modes, binds and volumes, the user namespace, seccomp compiled for crun,
and nothing shared between two specs."""

from __future__ import annotations

import json
from typing import Any

from berth.container import hostconfig, seccomp, spec
from berth.container.users import User
from berth.linux.idmap import IDMap


def _build(hc: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    hc = {"NetworkMode": "bridge", **(hc or {})}
    inputs = {"rootfs": "/r", "args": ["sh"], "env": ["A=1"], "cwd": "/", "user": User(0, 0, (), "/root"),
              "hostname": "h", "tty": False, "host_config": hc, "modes": hostconfig.modes(hc),
              "cgroups_path": "/berth/x", "cgroup_v2": False, "memsw": True,
              "etc_files": {"/etc/hosts": "/data/hosts"}, "netns_path": "/run/netns/x", **kw}
    return spec.build(spec.Inputs(**inputs))


def _ns(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["type"]: n for n in config["linux"]["namespaces"]}


def _mount(config: dict[str, Any], dest: str) -> dict[str, Any] | None:
    return next((m for m in config["mounts"] if m["destination"] == dest), None)


def test_the_defaults() -> None:
    c = _build()
    assert list(_ns(c)) == ["pid", "ipc", "uts", "mount", "network"]
    assert _ns(c)["network"]["path"] == "/run/netns/x"
    assert c["hostname"] == "h" and c["root"] == {"path": "/r", "readonly": False}
    assert _mount(c, "/dev/shm")["type"] == "tmpfs"  # type: ignore[index]
    assert _mount(c, "/etc/hosts")["source"] == "/data/hosts"  # type: ignore[index]
    env = c["process"]["env"]
    assert env[0].startswith("PATH=") and "A=1" in env and "HOSTNAME=h" in env and "HOME=/root" in env
    assert "user" not in _ns(c) and "uidMappings" not in c["linux"]


def test_namespace_modes_shape_the_namespaces_and_dev_shm() -> None:
    c = _build({"PidMode": "host", "UTSMode": "host", "IpcMode": "container:other"},
               joins={"ipc": "/proc/9/ns/ipc", "shm": "/data/other/shm"})
    assert "pid" not in _ns(c) and "uts" not in _ns(c) and "hostname" not in c
    assert _ns(c)["ipc"]["path"] == "/proc/9/ns/ipc"
    assert _mount(c, "/dev/shm") == {"destination": "/dev/shm", "type": "bind", "source": "/data/other/shm",
                                     "options": ["rbind", "rprivate"]}
    assert _mount(_build({"IpcMode": "none"}), "/dev/shm") is None
    assert _mount(_build({"IpcMode": "shareable"}, shm_source="/data/me/shm"), "/dev/shm")["source"] == \
        "/data/me/shm"  # type: ignore[index]
    assert _mount(_build({"IpcMode": "host"}), "/dev/shm")["source"] == "/dev/shm"  # type: ignore[index]
    assert "network" not in _ns(_build({"NetworkMode": "host"}))
    assert "cgroup" in _ns(_build(cgroup_v2=True)) and "cgroup" not in _ns(_build({"CgroupnsMode": "host"},
                                                                                  cgroup_v2=True))


def test_a_remapped_container_gets_a_user_namespace_last() -> None:
    c = _build(idmap=IDMap(100000, 100000, 65536))
    assert c["linux"]["namespaces"][-1] == {"type": "user"}
    assert c["linux"]["uidMappings"][0]["hostID"] == 100000


def test_volumes_binds_and_propagation() -> None:
    vol = {"destination": "/data", "type": "bind", "source": "/v/_data", "options": ["rbind", "rprivate", "ro"]}
    bind = {"destination": "/x", "type": "bind", "source": "/srv", "options": ["rbind", "rslave"]}
    c = _build(user_mounts=[bind], volume_mounts=[vol])
    assert c["mounts"][-2:] == [bind, vol]  # binds and tmpfs, then the volumes
    assert c["linux"]["rootfsPropagation"] == "rslave"  # or the runtime's private root cuts it off
    tmpfs = {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]}
    assert _build(user_mounts=[bind, tmpfs])["linux"]["rootfsPropagation"] == "rshared"
    assert "rootfsPropagation" not in _build(volume_mounts=[vol])["linux"]


def test_seccomp_is_compiled_for_crun_and_options_reach_the_spec() -> None:
    c = _build({"ReadonlyRootfs": True, "OomScoreAdj": 5, "ConsoleSize": [20, 80]}, tty=True, compile_seccomp=True)
    assert c["root"]["readonly"] and c["process"]["oomScoreAdj"] == 5
    assert c["process"]["consoleSize"] == {"height": 20, "width": 80}
    profile = _build()["linux"]["seccomp"]  # runc: the profile itself
    bpf = seccomp.bpf_base64(json.dumps(profile, sort_keys=True))
    if bpf is None:  # no libseccomp to compile with: crun gets the profile too
        assert c["linux"]["seccomp"] == profile
    else:
        assert c["annotations"][seccomp.BPF_ANNOTATION] == bpf and "seccomp" not in c["linux"]


def test_two_specs_share_nothing() -> None:
    a, b = _build(), _build()
    a["mounts"][0]["options"].append("changed")
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["linux"]["maskedPaths"].clear()
    c = _build()
    assert c == b


def test_confinement_is_written_as_the_spec_is_made() -> None:
    priv = _build({"Privileged": True})
    assert "ro" not in _mount(priv, "/sys")["options"] and "ro" not in _mount(priv, "/sys/fs/cgroup")["options"]  # type: ignore[index]
    assert priv["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "seccomp" not in priv["linux"] and priv["linux"]["maskedPaths"] == []
    cg = _build({"SecurityOpt": ["writable-cgroups=true", "no-new-privileges"], "CapDrop": ["ALL"],
                 "ShmSize": 1 << 20, "Ulimits": [{"Name": "nproc", "Soft": 5, "Hard": 6}],
                 "Sysctls": {"net.ipv4.ip_forward": "1"}})
    assert "ro" in _mount(cg, "/sys")["options"] and "ro" not in _mount(cg, "/sys/fs/cgroup")["options"]  # type: ignore[index]
    assert cg["process"]["noNewPrivileges"] and cg["process"]["capabilities"]["bounding"] == []
    assert "size=1048576" in _mount(cg, "/dev/shm")["options"]  # type: ignore[index]
    assert [r["type"] for r in cg["process"]["rlimits"]] == ["RLIMIT_NOFILE", "RLIMIT_NPROC"]
    assert cg["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"} and "seccomp" in cg["linux"]
