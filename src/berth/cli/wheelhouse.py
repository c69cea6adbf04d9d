"""The wheels `berth machine create` and `upgrade` copy to a host: berth, at the local CLI's version,
and every Python package it needs, so a host installs them with ``pip --no-index`` and needs no
route to a package index.

``make setup`` fills ``<venv>/share/berth/wheelhouse`` (``BERTH_WHEELHOUSE`` overrides it). Where
berth is installed from its sources (an editable install), berth's own wheel is built again from
them when a source file is newer than the wheel, offline, with the setuptools and wheel kept in the
wheelhouse: what a host gets is what this CLI runs.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

from berth import __version__
from berth.errors import InvalidParameter

DIST = "berth-engine"
BUILD_ONLY = ("setuptools", "wheel")  # kept to rebuild berth's wheel; not installed on hosts


@dataclass(frozen=True)
class Wheelhouse:
    dir: str
    wheels: tuple[str, ...]  # file names to copy
    python: str  # the "3.11" every compiled wheel here is for


def location(environ: Mapping[str, str]) -> str:
    return environ.get("BERTH_WHEELHOUSE") or os.path.join(sys.prefix, "share", "berth", "wheelhouse")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _source_dir() -> str | None:
    """The source tree of an editable install, else None."""
    try:
        text = metadata.distribution(DIST).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    info = json.loads(text)
    url = str(info.get("url") or "")
    if (info.get("dir_info") or {}).get("editable") and url.startswith("file://"):
        return url[len("file://"):]
    return None


def _newest(tree: str) -> float:
    newest = os.stat(os.path.join(tree, "pyproject.toml")).st_mtime
    for root, dirs, files in os.walk(os.path.join(tree, "src", "berth")):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        for f in files:
            if not f.endswith(".pyc"):
                newest = max(newest, os.stat(os.path.join(root, f)).st_mtime)
    return newest


def _berth_wheel(directory: str) -> str | None:
    found = glob.glob(os.path.join(directory, f"berth_engine-{__version__}-*.whl"))
    return found[0] if found else None


def prepare(environ: Mapping[str, str]) -> Wheelhouse:
    """The wheelhouse, checked complete (berth at this version and each of its requirements)."""
    directory = location(environ)
    if not os.path.isdir(directory):
        raise InvalidParameter(f"no wheelhouse at {directory}: run 'make setup' (it makes one), or point "
                               "BERTH_WHEELHOUSE at a directory of berth's wheels")
    src = _source_dir()
    wheel = _berth_wheel(directory)
    if src and (wheel is None or os.stat(wheel).st_mtime < _newest(src)):
        if wheel:
            os.unlink(wheel)
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                            "--no-index", "--find-links", directory, "-w", directory, src],
                           capture_output=True, text=True, timeout=300)
        wheel = _berth_wheel(directory)
        if r.returncode != 0 or wheel is None:
            raise InvalidParameter(f"could not build berth's wheel from {src}: {r.stderr.strip()[-500:]}")
    if wheel is None:
        raise InvalidParameter(f"the wheelhouse {directory} has no wheel of berth {__version__}: run 'make setup'")
    names = sorted(f for f in os.listdir(directory) if f.endswith(".whl")
                   and _norm(f.split("-", 1)[0]) not in BUILD_ONLY)
    have = {_norm(f.split("-", 1)[0]) for f in names}
    needed = {_norm(re.split(r"[ <>=!~;\[(]", r, maxsplit=1)[0]) for r in metadata.requires(DIST) or []
              if "extra ==" not in r}
    missing = sorted(needed - have)
    if missing:
        raise InvalidParameter(f"the wheelhouse {directory} lacks {', '.join(missing)}: run 'make setup' again")
    return Wheelhouse(directory, tuple(names), f"{sys.version_info.major}.{sys.version_info.minor}")
