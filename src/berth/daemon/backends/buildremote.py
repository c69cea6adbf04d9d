"""What a build fetches from the network: a remote context (``remote=``: a tarball, a Dockerfile
served as text/plain, or a git repository, as dockerd takes them) and ADD's URLs. Every URL is
parsed first; downloads are bounded in size and time; git runs with the ``ext`` and ``file``
transports off (an API caller must not make the daemon run commands or read the host's
repositories), never prompts, and gets its arguments after ``--``."""

from __future__ import annotations

import base64
import email.utils
import json
import os
import posixpath
import re
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass

import httpx

from berth.build import context as bcontext
from berth.errors import InvalidParameter, Unavailable
from berth.image.streams import Gunzip

MAX_DOWNLOAD = bcontext.MAX_CONTEXT
TIMEOUT = 600.0  # between two reads
DEADLINE = 3600.0  # a whole download (a server that sends a byte now and then is not waited for forever)
_GIT_SUFFIX = re.compile(r"\.git(?:#.+)?$")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}")


def is_git(url: str) -> bool:
    """dockerd's rule: git://, github.com/, git@, or an http(s) URL whose path ends in .git[#…]."""
    if url.startswith(("git://", "github.com/", "git@")):
        return True
    return url.startswith(("http://", "https://")) and bool(_GIT_SUFFIX.search(url))


def _http_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidParameter(f"unsupported URL {url!r}: only http and https are fetched")
    return url


@dataclass(frozen=True)
class Download:
    path: str
    content_type: str
    mtime: float | None


def download(url: str, dest: str, limit: int = MAX_DOWNLOAD, deadline: float = DEADLINE) -> Download:
    """``url`` (http or https) into the new file ``dest``, at most ``limit`` bytes, in at most
    ``deadline`` seconds."""
    _http_url(url)
    end = time.monotonic() + deadline
    try:
        with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(TIMEOUT, connect=30.0)) as client, \
                client.stream("GET", url) as r:
            if r.status_code != 200:
                raise Unavailable(f"failed to GET {url} with status {r.status_code} {r.reason_phrase}")
            got = 0
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                for chunk in r.iter_bytes():
                    got += len(chunk)
                    if got > limit:
                        raise InvalidParameter(f"{url} is larger than {limit >> 20} MiB")
                    if time.monotonic() > end:
                        raise Unavailable(f"failed to GET {url}: not done in {deadline:g} s")
                    f.write(chunk)
            modified = r.headers.get("last-modified")
            mtime = None
            if modified:
                try:
                    mtime = email.utils.parsedate_to_datetime(modified).timestamp()
                except (TypeError, ValueError):
                    mtime = None
            return Download(dest, r.headers.get("content-type", ""), mtime)
    except httpx.HTTPError as exc:
        raise Unavailable(f"failed to GET {url}: {exc}") from None


def add_url(url: str, into: str) -> str:
    """ADD's URL source: downloaded into the empty directory ``into`` under its URL's last path
    component (mode 0600 and the Last-Modified time, as dockerd); that name."""
    name = posixpath.basename(urllib.parse.urlsplit(url).path.rstrip("/")) or "index.html"
    if name in (".", "..") or "\0" in name:
        raise InvalidParameter(f"cannot take a file name from {url!r}")
    got = download(url, os.path.join(into, name))
    if got.mtime is not None:
        os.utime(got.path, (got.mtime, got.mtime))
    return name


def fetch_context(remote: str, work: str, ctx: str) -> dict[str, str]:
    """A remote context into the (empty) directory ``ctx``; the files' content hashes where known."""
    if is_git(remote):
        _git(remote, work, ctx)
        return {}
    got = download(_http_url(remote), os.path.join(work, "remote"))
    try:
        if got.content_type.split(";")[0].strip() == "text/plain":  # a Dockerfile alone, as dockerd
            os.rename(got.path, os.path.join(ctx, "Dockerfile"))
            os.chmod(os.path.join(ctx, "Dockerfile"), 0o644)
            return {}
        with open(got.path, "rb") as f:
            return bcontext.unpack(bcontext.open_context(f, Gunzip), ctx)
    finally:
        if os.path.exists(got.path):
            os.unlink(got.path)


def _git(remote: str, work: str, ctx: str) -> None:
    url, _, fragment = remote.partition("#")
    ref, _, subdir = fragment.partition(":")
    if url.startswith("github.com/"):
        url = "https://" + url
    if url.startswith("-") or any(c in url for c in "\0\n\r "):
        raise InvalidParameter(f"invalid git URL {remote!r}")
    if ref and not _REF.fullmatch(ref):
        raise InvalidParameter(f"invalid git reference {ref!r}")
    if subdir and (subdir.startswith("/") or ".." in subdir.split("/")):
        raise InvalidParameter(f"invalid subdirectory {subdir!r} in {remote!r}")
    clone = os.path.join(work, "git")
    # only the network transports; no helper (ext::, foo::…) and no local file, in submodules either
    allow = [a for proto in ("http", "https", "git", "ssh") for a in ("-c", f"protocol.{proto}.allow=always")]
    argv = ["git", "-c", "protocol.allow=never", *allow, "-c", "protocol.ext.allow=never", "-c",
            "protocol.file.allow=never", "clone", "--quiet",
            "--depth", "1", "--recurse-submodules", *(["--branch", ref] if ref else []), "--", url, clone]
    env = {k: v for k, v in os.environ.items() if k.lower() in ("path", "http_proxy", "https_proxy", "no_proxy",
                                                                "all_proxy")}
    # HOME is the build's own directory: the daemon's user's git config, credentials and keys are not
    # an API caller's to use
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", GIT_CONFIG_NOSYSTEM="1", HOME=work,
               GIT_SSH_COMMAND="ssh -o BatchMode=yes -F /dev/null")
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
        if r.returncode != 0 and "shallow" in r.stderr:  # a dumb http server: the whole history, then
            shutil.rmtree(clone, ignore_errors=True)
            argv.remove("--depth")
            argv.remove("1")
            r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                               stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"error fetching the git repository {url}: {exc}") from None
    if r.returncode != 0:
        raise Unavailable(f"error fetching: {r.stderr.strip()[-500:]}: exit status {r.returncode}")
    shutil.rmtree(os.path.join(clone, ".git"), ignore_errors=True)
    top = os.path.join(clone, subdir) if subdir else clone
    if os.path.islink(top) or not os.path.isdir(top) or not os.path.realpath(top).startswith(
            os.path.realpath(clone) + os.sep * bool(subdir)):
        raise InvalidParameter(f"subdirectory {subdir!r} is not a directory of the repository")
    os.rmdir(ctx)
    os.rename(top, ctx)


def registry_auth(config: str, domain: str) -> str:
    """X-Registry-Auth for ``domain`` from the build's X-Registry-Config (base64 JSON: registry →
    credentials, as the docker CLI sends every login it has); "" when it has none for it."""
    if not config:
        return ""
    try:
        configs = json.loads(base64.urlsafe_b64decode(config + "=" * (-len(config) % 4)))
    except ValueError:
        raise InvalidParameter("X-Registry-Config is not base64 JSON") from None
    if not isinstance(configs, dict):
        return ""
    for key, value in configs.items():
        host = str(key).split("://", 1)[-1].split("/", 1)[0]
        if host == domain or domain == "docker.io" and host in ("index.docker.io", "registry-1.docker.io"):
            return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
    return ""
