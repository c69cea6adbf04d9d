"""berth's default seccomp profile: allow by default, refuse (EPERM) what Docker's default profile keeps
from an unprivileged container, unless the container holds the capability Docker would require.

This is a deny-list, not Docker's allow-list: a syscall the kernel adds later is allowed until listed
here. It closes the paths Docker's profile is known for: kernel modules, kexec and reboot, mounting
and the new mount API, keyrings, bpf, perf, namespaces (unshare, setns, and clone with namespace
flags; clone3 answers ENOSYS so that libc falls back to clone, as with Docker), handle-based opens,
and obsolete or dangerous calls.
"""

from __future__ import annotations

import platform
from typing import Any

EPERM = 1
ENOSYS = 38

# (syscalls, capabilities any one of which lifts the refusal; empty = always refused)
RULES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("kexec_load", "kexec_file_load", "reboot"), ("CAP_SYS_BOOT",)),
    (("init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module"),
     ("CAP_SYS_MODULE",)),
    (("mount", "umount", "umount2", "pivot_root", "unshare", "setns", "swapon", "swapoff", "quotactl",
      "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "syslog",
      "lookup_dcookie", "name_to_handle_at", "setdomainname", "sethostname", "vhangup"), ("CAP_SYS_ADMIN",)),
    (("open_by_handle_at",), ("CAP_DAC_READ_SEARCH",)),
    (("acct",), ("CAP_SYS_PACCT",)),
    (("bpf",), ("CAP_SYS_ADMIN", "CAP_BPF")),
    (("perf_event_open",), ("CAP_SYS_ADMIN", "CAP_PERFMON")),
    (("iopl", "ioperm"), ("CAP_SYS_RAWIO",)),
    (("settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"), ("CAP_SYS_TIME",)),
    (("process_vm_readv", "process_vm_writev", "kcmp"), ("CAP_SYS_PTRACE",)),
    (("keyctl", "add_key", "request_key", "userfaultfd", "uselib", "nfsservctl", "sysfs", "_sysctl", "ustat",
      "vm86", "vm86old", "personality_unsafe"), ()),
]
_CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_ARCHES = {"x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
           "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}


def profile(capabilities: list[str]) -> dict[str, Any]:
    held = set(capabilities)
    denied: list[str] = []
    for names, caps in RULES:
        if not caps or not held.intersection(caps):
            denied.extend(n for n in names if n != "personality_unsafe")
    syscalls: list[dict[str, Any]] = [{"names": sorted(denied), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}]
    if "CAP_SYS_ADMIN" not in held:
        for flag in _CLONE_NAMESPACES:  # clone(2) creating a namespace: one rule per flag bit
            syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                             "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]})
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": _ARCHES.get(platform.machine(), []),
            "syscalls": syscalls}
