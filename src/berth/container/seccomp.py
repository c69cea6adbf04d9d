"""Seccomp as Docker does it: an allow-list whose default action is EPERM.

``seccomp_default.json`` is moby's default profile, unchanged: github.com/moby/profiles,
``seccomp/default.json`` at commit 3c28324314729dbade8287e868eef6338c42807a (2026-05-06),
Copyright The Moby Authors, Apache License 2.0 (the licence berth itself is under). Everything the
profile does not name answers EPERM: io_uring, keyctl, unshare and clone with namespace flags
without CAP_SYS_ADMIN (clone3 answers ENOSYS so libc falls back to clone), personality with any
argument but the five it lists, and every syscall the kernel adds later.

Each distinct profile is compiled to BPF once (``bpf_base64``, with libseccomp) and given to crun
ready-made: compiling the allow-list cost crun 12–13 ms per container.

``profile()`` turns a profile in Docker's format (``names``, ``includes``/``excludes`` by
capability, architecture and minimum kernel, ``archMap``) into the OCI form for one container,
as moby's ``setupSeccomp`` does: a rule applies only when the container's bounding set holds every
capability it includes and none it excludes. ``--security-opt seccomp=<file>`` reaches berth as the
file's contents (the docker CLI reads it) and goes through the same conversion, with its errors
reported as 400s.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import platform
from importlib import resources
from typing import Any

from berth.errors import InvalidParameter
from berth.linux import seccomp_bpf

log = logging.getLogger("berth.containers")

# Python's machine name → the name moby's profile uses in includes/excludes "arches"
_NATIVE = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i686": "x86", "i386": "x86",
           "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "loongarch64": "loong64"}
_SECCOMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "x86": "SCMP_ARCH_X86",
                 "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
                 "riscv64": "SCMP_ARCH_RISCV64", "loong64": "SCMP_ARCH_LOONGARCH64"}
_ACTIONS = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
            "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"}
_OPS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ"}
MAX_PROFILE = 1 << 20


@functools.cache
def default_profile() -> dict[str, Any]:
    data = resources.files("berth.container").joinpath("seccomp_default.json").read_bytes()
    prof: dict[str, Any] = json.loads(data)
    return prof


def _kernel() -> tuple[int, int]:
    release = os.uname().release
    parts = release.split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return 0, 0


def _kernel_at_least(text: str) -> bool:
    try:
        major, minor = (int(x) for x in str(text).split(".")[:2])
    except ValueError:
        raise InvalidParameter(f"seccomp profile: bad minKernel {text!r}") from None
    return _kernel() >= (major, minor)


def _applies(rule: dict[str, Any], caps: set[str], arch: str) -> bool:
    exc = rule.get("excludes") or {}
    if arch in (exc.get("arches") or []):
        return False
    if any(c in caps for c in exc.get("caps") or []):
        return False
    if exc.get("minKernel") and _kernel_at_least(exc["minKernel"]):
        return False
    inc = rule.get("includes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or []):
        return False
    if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
        return False
    return True


def _check_rule(rule: Any) -> dict[str, Any]:
    """An OCI syscall rule from a profile's rule, every field checked (the profile may come from a
    request: nothing unchecked reaches the runtime)."""
    if not isinstance(rule, dict):
        raise InvalidParameter("seccomp profile: each syscalls entry must be an object")
    names = rule.get("names")
    if rule.get("name"):
        if names:
            raise InvalidParameter("seccomp profile: both 'name' and 'names' are specified, use either 'name' or "
                                   "'names'")
        names = [rule["name"]]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise InvalidParameter("seccomp profile: a syscalls entry needs 'names', a list of syscall names")
    action = rule.get("action")
    if action not in _ACTIONS:
        raise InvalidParameter(f"seccomp profile: unknown action {action!r}")
    out: dict[str, Any] = {"names": list(names), "action": action}
    if rule.get("errnoRet") is not None:
        if not isinstance(rule["errnoRet"], int) or not 0 <= rule["errnoRet"] < 4096:
            raise InvalidParameter("seccomp profile: errnoRet must be an errno number")
        out["errnoRet"] = rule["errnoRet"]
    args = []
    for a in rule.get("args") or []:
        if not isinstance(a, dict) or a.get("op") not in _OPS or not isinstance(a.get("index"), int) \
                or not 0 <= a["index"] < 6 or not isinstance(a.get("value", 0), int) \
                or not isinstance(a.get("valueTwo", 0), int):
            raise InvalidParameter(f"seccomp profile: bad argument filter {a!r}")
        args.append({"index": a["index"], "value": a.get("value", 0), "valueTwo": a.get("valueTwo", 0),
                     "op": a["op"]})
    if args:
        out["args"] = args
    return out


def convert(prof: dict[str, Any], capabilities: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` for a container with bounding set ``capabilities``, from a profile in
    Docker's format (moby's setupSeccomp)."""
    if not isinstance(prof, dict):
        raise InvalidParameter("seccomp profile: must be a JSON object")
    if prof.get("architectures") and prof.get("archMap"):
        raise InvalidParameter("seccomp profile: both 'architectures' and 'archMap' are specified, use either "
                               "'architectures' or 'archMap'")
    default = prof.get("defaultAction")
    if default not in _ACTIONS:
        raise InvalidParameter(f"seccomp profile: unknown defaultAction {default!r}")
    arch = _NATIVE.get(platform.machine(), platform.machine())
    out: dict[str, Any] = {"defaultAction": default}
    if prof.get("defaultErrnoRet") is not None:
        ret = prof["defaultErrnoRet"]
        if not isinstance(ret, int) or isinstance(ret, bool) or not 0 <= ret < 4096:
            raise InvalidParameter("seccomp profile: defaultErrnoRet must be an errno number")
        out["defaultErrnoRet"] = ret
    if prof.get("architectures"):
        arches = prof["architectures"]
        if not isinstance(arches, list) or not all(isinstance(a, str) and a.startswith("SCMP_ARCH_") and
                                                   a[10:].isalnum() for a in arches):
            raise InvalidParameter("seccomp profile: architectures must be SCMP_ARCH_* names")
        out["architectures"] = list(arches)
    else:
        native = _SECCOMP_ARCH.get(arch)
        for entry in prof.get("archMap") or []:
            if isinstance(entry, dict) and entry.get("architecture") == native:
                out["architectures"] = [native, *(entry.get("subArchitectures") or [])]
                break
    caps = set(capabilities)
    syscalls = prof.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise InvalidParameter("seccomp profile: 'syscalls' must be a list")
    for r in syscalls:
        if not isinstance(r, dict):
            raise InvalidParameter("seccomp profile: each syscalls entry must be an object")
        for key in ("includes", "excludes"):
            cond = r.get(key)
            if cond is not None and (not isinstance(cond, dict) or not all(
                    isinstance(cond.get(k) or [], list) for k in ("caps", "arches"))
                    or not isinstance(cond.get("minKernel") or "", str)):
                raise InvalidParameter(f"seccomp profile: bad {key} {cond!r}")
    out["syscalls"] = [_check_rule(r) for r in syscalls if _applies(r, caps, arch)]
    if prof.get("flags"):
        flags = prof["flags"]
        if not isinstance(flags, list) or not all(isinstance(f, str) and f.startswith("SECCOMP_FILTER_FLAG_")
                                                  for f in flags):
            raise InvalidParameter("seccomp profile: flags must be SECCOMP_FILTER_FLAG_* names")
        out["flags"] = list(flags)
    if prof.get("listenerPath") or prof.get("listenerMetadata"):
        raise InvalidParameter("seccomp profile: notification listeners are not supported by berth")
    return out


def profile(capabilities: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The default profile for a container with these capabilities."""
    return convert(default_profile(), capabilities)


def custom(text: str, capabilities: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--security-opt seccomp=<contents of a profile file>``."""
    if len(text) > MAX_PROFILE:
        raise InvalidParameter("seccomp profile is larger than 1 MiB")
    try:
        prof = json.loads(text)
    except ValueError as exc:
        raise InvalidParameter(f"Decoding seccomp profile failed: {exc}") from None
    return convert(prof, capabilities)


BPF_ANNOTATION = "run.oci.seccomp_bpf_data"


def bpf_base64(profile_json: str) -> str | None:
    """The compiled program of an OCI profile, base64 (crun's ``run.oci.seccomp_bpf_data``), or None
    when libseccomp is missing or refuses it (crun then compiles the profile itself)."""
    return _bpf_cached(profile_json)


@functools.lru_cache(maxsize=64)
def _bpf_cached(profile_json: str) -> str | None:
    try:
        return base64.b64encode(seccomp_bpf.compile_bpf(json.loads(profile_json))).decode()
    except (OSError, KeyError, ValueError) as exc:
        log.warning("seccomp profile not precompiled (the runtime compiles it): %s", exc)
        return None
