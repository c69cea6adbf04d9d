"""``userns-remap``: which user's subordinate ids remap a container's root, as dockerd reads the
setting ("default", "user", "user:group", "uid", "uid:gid"), with "default" making the
``dockremap`` user and its ranges when they are missing (as dockerd does)."""

from __future__ import annotations

import grp
import logging
import pwd
import re
import subprocess

from berth.errors import InvalidParameter, System
from berth.linux.idmap import IDMap, subordinate_range

log = logging.getLogger("berth.daemon")

DEFAULT_USER = "dockremap"
_SPEC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")


def check_spec(spec: str) -> None:
    if spec and not _SPEC.fullmatch(spec):
        raise InvalidParameter(f"invalid userns-remap {spec!r}: use \"default\", a user, user:group, uid or uid:gid")


def _names(entry: str, lookup_name: bool) -> tuple[str, ...]:
    """The names /etc/subuid may use for a user or group: its name and its number."""
    try:
        if entry.isdigit():
            rec = pwd.getpwuid(int(entry)) if lookup_name else grp.getgrgid(int(entry))
            return (entry, rec.pw_name if lookup_name else rec.gr_name)  # type: ignore[union-attr]
        rec = pwd.getpwnam(entry) if lookup_name else grp.getgrnam(entry)
        return (entry, str(rec.pw_uid if lookup_name else rec.gr_gid))  # type: ignore[union-attr]
    except KeyError:
        raise InvalidParameter(f"userns-remap: no such {'user' if lookup_name else 'group'} {entry!r}") from None


def _free_start(path: str) -> int:
    """The first start, from 100000, after every range in ``path``."""
    end = 100000
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    end = max(end, int(parts[1]) + int(parts[2]))
    except FileNotFoundError:
        pass
    return end


def _ensure_default_user() -> None:
    try:
        pwd.getpwnam(DEFAULT_USER)
    except KeyError:
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/false", DEFAULT_USER],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise System(f"userns-remap: cannot create the {DEFAULT_USER} user: {r.stderr.strip()}") from None
        log.info("userns-remap: created the %s user", DEFAULT_USER)
    for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        if subordinate_range(path, (DEFAULT_USER,)) is None:
            start = _free_start(path)
            r = subprocess.run(["usermod", flag, f"{start}-{start + 65535}", DEFAULT_USER], capture_output=True,
                               text=True, timeout=30)
            if r.returncode != 0:
                raise System(f"userns-remap: cannot give {DEFAULT_USER} subordinate ids in {path}: "
                             f"{r.stderr.strip()}") from None
            log.info("userns-remap: gave %s the ids %d-%d in %s", DEFAULT_USER, start, start + 65535, path)


def resolve(spec: str) -> IDMap | None:
    """The IDMap for a userns-remap setting ("" = off)."""
    if not spec:
        return None
    check_spec(spec)
    if spec == "default":
        _ensure_default_user()
        spec = DEFAULT_USER
    user, _, group = spec.partition(":")
    users = _names(user, True)
    groups = _names(group, False) if group else users
    uids = subordinate_range("/etc/subuid", users)
    gids = subordinate_range("/etc/subgid", groups)
    if uids is None or gids is None:
        missing = "/etc/subuid" if uids is None else "/etc/subgid"
        raise InvalidParameter(f"userns-remap: {spec} has no subordinate id range in {missing}")
    return IDMap(uids[0], gids[0], min(uids[1], gids[1]))
