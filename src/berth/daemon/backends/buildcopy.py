"""COPY and ADD: which files of the context (or of another stage's image) go where, a hash of them
for the cache, and the tar that puts them into the step's container. Every path is resolved inside
its root (``safepath``): a context's symlinks cannot lead a COPY out of the context."""

from __future__ import annotations

import fnmatch
import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import Any

from berth import tarfmt
from berth.build import context as bcontext
from berth.build import digest, expand
from berth.build.parse import Instruction
from berth.container import archive as carchive
from berth.daemon.backends.buildsteps import StageState
from berth.errors import InvalidParameter
from berth.image.streams import ChunkReader, Gunzip
from berth.linux import safepath

MAX_SOURCES = 100000


@dataclass
class Source:
    path: str  # resolved, inside its root, "/"-rooted
    is_dir: bool
    name: str  # the base name as written (for a file copied into a directory)


@dataclass
class Plan:
    cmd: str
    dest: str  # absolute, trailing "/" kept
    raw_dest: str  # as written (after substitution), for the history
    sources: list[Source]
    root: str  # host directory of the sources (the context), "" when they come from an image
    chown: str = ""
    chmod: int | None = None
    decompress: bool = False  # ADD: local archives are unpacked
    from_image: str = ""
    patterns: list[str] = field(default_factory=list)
    comment: str = ""
    digests: dict[str, str] = field(default_factory=dict)  # the context's files' sha256, from unpack


def _dest(raw: str, st: StageState) -> str:
    if raw.startswith("/"):
        return raw
    joined = posixpath.join("/", st.run.get("WorkingDir") or "/", raw)
    return joined + "/" if raw.endswith("/") and not joined.endswith("/") else joined


def plan(ins: Instruction, st: StageState, ctx: str, digests: dict[str, str] | None = None,
         downloaded: list[str] | None = None) -> Plan:
    """``downloaded``: ADD's URLs, fetched into ``ctx`` under these names (never unpacked, as dockerd)."""
    env = st.env
    args = [expand.word(a, env, st.escape) for a in ins.args]
    if len(args) < 2:
        raise InvalidParameter(f"{ins.cmd} requires at least two arguments, but only one was provided. "
                               f"Destination could not be determined.")
    chmod = None
    if "chmod" in ins.flags:
        try:
            chmod = int(ins.flags["chmod"], 8)
        except ValueError:
            raise InvalidParameter(f"invalid --chmod={ins.flags['chmod']}: not an octal mode") from None
        if not 0 <= chmod <= 0o7777:
            raise InvalidParameter(f"invalid --chmod={ins.flags['chmod']}")
    p = Plan(ins.cmd, _dest(args[-1], st), args[-1], [], ctx, expand.word(ins.flags.get("chown", ""), env, st.escape), chmod,
             decompress=ins.cmd == "ADD", patterns=args[:-1])
    if downloaded is not None:
        p.patterns, p.decompress = downloaded, False
    for src in p.patterns:
        if "://" in src:
            raise InvalidParameter(f"{ins.cmd} cannot take a URL ({src}): only ADD can")
    if "from" in ins.flags:
        if ins.cmd == "ADD":
            raise InvalidParameter("ADD does not support --from")
        p.from_image = expand.word(ins.flags["from"], env, st.escape)  # a stage's name or number, or an image
        p.root = ""
        p.decompress = False
        return p
    p.digests = digests or {}
    with safepath.Root.at(ctx, label="build context") as root:
        p.sources = _match(root, p.patterns, "build context")
        p.comment = _comment(p, root)
    return _checked(p)


def plan_from_root(p: Plan, root: safepath.Root) -> Plan:
    """Complete a ``--from`` plan with the sources found in the image's files (``root``)."""
    p.sources = _match(root, p.patterns, "image")
    p.comment = _comment(p, root)
    return _checked(p)


def _walk(root: safepath.Root) -> list[str]:
    out: list[str] = []

    def rec(fd: int, rel: str) -> None:
        for e in os.scandir(fd):
            path = f"{rel}/{e.name}"
            out.append(path)
            if len(out) > MAX_SOURCES:
                raise InvalidParameter(f"a COPY wildcard matches more than {MAX_SOURCES} files")
            if e.is_dir(follow_symlinks=False):
                sub = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                try:
                    rec(sub, path)
                finally:
                    os.close(sub)

    top = root.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        rec(top, "")
    finally:
        os.close(top)
    return out


def _match(root: safepath.Root, patterns: list[str], where: str) -> list[Source]:
    sources: list[Source] = []
    listing: list[str] | None = None
    for pat in patterns:
        clean = posixpath.normpath("/" + pat)
        if any(c in clean for c in "*?["):
            if listing is None:
                listing = _walk(root)
            depth = clean.count("/")
            parts = clean.split("/")
            names = [p for p in listing if p.count("/") == depth
                     and all(fnmatch.fnmatchcase(a, b) for a, b in zip(p.split("/"), parts, strict=True))]
            if not names:
                raise InvalidParameter(f"COPY failed: no source files were specified ({pat} matches nothing)")
        else:
            names = [clean]
        for name in sorted(names):
            try:
                resolved = root.resolve(name)
                st = os.fstat(fd := root.open(resolved, os.O_PATH))
                os.close(fd)
            except (FileNotFoundError, NotADirectoryError):
                raise InvalidParameter(f"COPY failed: file not found in {where} or excluded by .dockerignore: "
                                       f"stat {name.lstrip('/')}: file does not exist") from None
            sources.append(Source(resolved, stat.S_ISDIR(st.st_mode), posixpath.basename(name) or "/"))
    return sources


def _tree_hash(root: safepath.Root, path: str, digests: dict[str, str]) -> str:
    """The content hash (``digest``) of what a source is: names, types, modes and contents (a file's from ``digests``,
    taken at unpack, when it is there; else read), never following a symlink."""
    h = digest.hasher()

    def entry(fd: int, name: str, rel: str, st: os.stat_result) -> None:
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_size}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(name, dir_fd=fd).encode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(st.st_mode):
            known = digests.get(rel)
            if known is None:
                ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
                try:
                    known = digest.of_fd(ffd)
                finally:
                    os.close(ffd)
            h.update(known.encode())
        elif stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                for e in sorted(os.scandir(sub), key=lambda e: e.name):
                    entry(sub, e.name, f"{rel.rstrip('/')}/{e.name}", e.stat(follow_symlinks=False))
            finally:
                os.close(sub)

    pfd, name = root.parent(path) if path != "/" else (os.dup(root.fd), ".")
    try:
        entry(pfd, name, path, os.stat(name, dir_fd=pfd, follow_symlinks=False))
    finally:
        os.close(pfd)
    return h.hexdigest()


def _comment(p: Plan, root: safepath.Root) -> str:
    """``COPY file:<hash> in <dest> `` as the classic builder's cache key and history (the hash is
    berth's own: the names, modes, sizes and contents of what is copied)."""
    hashes = [("dir:" if s.is_dir else "file:") + _tree_hash(root, s.path, p.digests) for s in p.sources]
    if len(hashes) == 1:
        key = hashes[0]
    else:
        key = "multi:" + digest.of_bytes(",".join(hashes).encode())
    chown = f"--chown={p.chown}" if p.chown else ""  # no space after it: dockerd's words exactly
    chmod = f"--chmod={p.chmod:o} " if p.chmod is not None else ""
    return f"{p.cmd} {chown}{chmod}{key} in {p.raw_dest} "


def _is_dir(root: safepath.Root, path: str) -> bool:
    try:
        fd = root.open(path, os.O_PATH)
    except OSError:
        return False
    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def _archive_reader(src_root: safepath.Root, path: str) -> Any | None:
    """An ADD source that is a tar (plain, gzip, bzip2, xz): a reader of its tar, else None."""
    fd, _ = safepath.open_regular(src_root, path, 1 << 40)
    f = os.fdopen(fd, "rb")
    try:
        reader = bcontext.open_context(f, Gunzip)
        head = reader.read(tarfmt.BLOCK)
        if len(head) < tarfmt.BLOCK or not tarfmt._checksum_ok(head):
            f.close()
            return None
    except (InvalidParameter, OSError, EOFError):
        f.close()
        return None
    f.seek(0)
    return f


def _checked(p: Plan) -> Plan:
    """Several sources need a directory destination, said with a trailing / (checked before any work)."""
    if (len(p.sources) > 1 or len(p.patterns) > 1) and not p.dest.endswith("/"):
        raise InvalidParameter(f"When using {p.cmd} with more than one source file, the destination must be a "
                               "directory and end with a /")
    return p


def apply(p: Plan, src_root: safepath.Root, dst: safepath.Root, owner: tuple[int, int]) -> None:
    """Put the plan's sources into the container's files ``dst``."""
    dest = p.dest
    into_dir = dest.endswith("/") or _is_dir(dst, dest)
    for s in p.sources:
        if p.decompress and not s.is_dir:
            f = _archive_reader(src_root, s.path)
            if f is not None:
                with f:
                    os.close(dst.mkdir_all(dest))
                    carchive.extract(bcontext.open_context(f, Gunzip), dst, dest, "build", False)
                continue
        target = dest.rstrip("/") or "/"
        if not s.is_dir and into_dir:
            target = posixpath.join(target, s.name)
        if target == "/" and not s.is_dir:
            raise InvalidParameter(f"cannot copy the file {s.name} over the root directory")
        parent, base = posixpath.split(target)
        os.close(dst.mkdir_all(parent or "/"))
        # the source's tar goes straight into the extraction (two roots: nothing is staged between)
        tar = ChunkReader(carchive.tar_stream(src_root, s.path, base or ".", "build context"))
        carchive.extract(tar, dst, parent or "/", "build", False, owner=owner, mode=p.chmod)  # type: ignore[arg-type]



