"""The user a container's process runs as, resolved as Docker does from the container's own
/etc/passwd and /etc/group, read through ``linux/safepath`` (inside the container's root, regular
files only, never blocking, bounded)."""

from __future__ import annotations

from dataclasses import dataclass

from berth.errors import InvalidParameter, NotFound
from berth.linux import safepath
from berth.linux.safepath import Root

PASSWD_LIMIT = 4 << 20  # /etc/passwd or /etc/group larger than this is refused, not read into memory


def _read_db(root: Root, rel: str) -> list[list[str]]:
    """/etc/passwd or /etc/group of the container, resolved inside its root, regular files only,
    never blocking, at most PASSWD_LIMIT bytes; [] when it does not exist."""
    try:
        data = safepath.read_file(root, rel, PASSWD_LIMIT)
    except NotFound:
        return []
    except InvalidParameter as exc:
        raise InvalidParameter(f"unable to read the container's {rel}: {exc.message}") from None
    text = data.decode("utf-8", "replace")
    return [line.split(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True, slots=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def resolve_user(root: Root, user: str, group_add: tuple[str, ...] = ()) -> User:
    """"name", "uid", "name:group", "uid:gid" → the user, as Docker resolves it; ``group_add``
    (``--group-add``: names or ids) joins the additional groups. The home directory is found here
    too, so that the runtime never reads the container's /etc/passwd itself (it does, to set HOME,
    when HOME is missing: a FIFO there would hang it)."""
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    numeric = name.isdigit() and (not group or group.isdigit()) and not group_add
    try:
        passwd = _read_db(root, "/etc/passwd")
        groups = _read_db(root, "/etc/group")
    except InvalidParameter:
        if not numeric:
            raise
        passwd = groups = []  # "uid[:gid]" needs no name: a broken passwd only loses the extra groups
    uid = gid = None
    login = None
    home = "/"
    for row in passwd:
        if len(row) >= 4 and (row[0] == name or row[2] == name) and row[2].isdigit() and row[3].isdigit():
            uid, gid, login = int(row[2]), int(row[3]), row[0]
            if len(row) >= 6 and row[5].startswith("/"):
                home = row[5]
            break
    if uid is None:
        if not name.isdigit():
            raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
        if len(name) > 10:
            raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(name), 0
    if group:
        for row in groups:
            if len(row) >= 3 and (row[0] == group or row[2] == group) and row[2].isdigit():
                gid = int(row[2])
                break
        else:
            if not group.isdigit() or len(group) > 10:
                raise InvalidParameter(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    extra = {int(row[2]) for row in groups if len(row) >= 4 and login and login in row[3].split(",")
             and row[2].isdigit() and int(row[2]) != gid}
    for wanted in group_add:
        found = [r for r in groups if len(r) >= 3 and r[0] == wanted and r[2].isdigit()]
        if found:
            extra.add(int(found[0][2]))
        elif wanted.isdigit():
            extra.add(int(wanted))
        else:
            raise InvalidParameter(f"Unable to find group {wanted}: no matching entries in group file")
    for v in (uid, gid, *extra):
        if v is not None and not 0 <= v <= 0xFFFFFFFE:
            raise InvalidParameter(f"user or group id {v} is out of range")
    if login is None and uid == 0:
        home = "/root"
    return User(uid, gid if gid is not None else 0, tuple(sorted(extra)), home)
