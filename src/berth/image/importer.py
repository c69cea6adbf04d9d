"""``docker import``: one layer from a root filesystem tar, with a config made here.

``changes`` are Dockerfile instructions applied to the config: CMD, ENTRYPOINT, ENV, EXPOSE,
LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, ONBUILD (exec or shell form, as docker import takes them).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shlex
from typing import Any, BinaryIO

from berth import __version__
from berth.errors import InvalidParameter
from berth.image.store import ImageStore, NewLayer

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _json_or_shell(value: str, shell: bool) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return parsed
    return ["/bin/sh", "-c", value] if shell else value.split()


def _pairs(value: str, instruction: str) -> list[tuple[str, str]]:
    words = shlex.split(value)
    if words and "=" not in words[0]:  # legacy "ENV key value"
        if len(words) < 2:
            raise InvalidParameter(f"{instruction} requires a value: {value!r}")
        return [(words[0], value.split(None, 1)[1].strip())]
    out = []
    for w in words:
        key, eq, val = w.partition("=")
        if not eq or not key:
            raise InvalidParameter(f"{instruction} names must be KEY=VALUE: {w!r}")
        out.append((key, val))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> None:
    for change in changes:
        instruction, _, value = change.strip().partition(" ")
        ins = instruction.upper()
        if ins == "CMD":
            config["Cmd"] = _json_or_shell(value, shell=True)
        elif ins == "ENTRYPOINT":
            config["Entrypoint"] = _json_or_shell(value, shell=True)
        elif ins == "ENV":
            env = [e for e in config.get("Env") or []]
            for key, val in _pairs(value, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={val}"]
            config["Env"] = env
        elif ins == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(value, "LABEL"))
            config["Labels"] = labels
        elif ins == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for p in value.split():
                port, _, proto = p.partition("/")
                if not port.isdigit():
                    raise InvalidParameter(f"invalid port in EXPOSE: {p!r}")
                ports[f"{port}/{proto or 'tcp'}"] = {}
            config["ExposedPorts"] = ports
        elif ins == "VOLUME":
            vols = dict(config.get("Volumes") or {})
            for v in _json_or_shell(value, shell=False):
                vols[v] = {}
            config["Volumes"] = vols
        elif ins == "USER":
            config["User"] = value.strip()
        elif ins == "WORKDIR":
            config["WorkingDir"] = value.strip()
        elif ins == "STOPSIGNAL":
            config["StopSignal"] = value.strip()
        elif ins == "ONBUILD":
            config["OnBuild"] = [*(config.get("OnBuild") or []), value.strip()]
        else:
            raise InvalidParameter(f"{instruction} is not a valid change command")


def import_rootfs(store: ImageStore, src: BinaryIO, tags: list[str], message: str,
                  changes: list[str]) -> str:
    container_config: dict[str, Any] = {}
    apply_changes(container_config, changes)  # before extracting: a bad change costs nothing
    ex = store.layers.extract(src)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    history: dict[str, Any] = {"created": now, "created_by": "", "comment": message or "Imported from -"}
    config = {
        "architecture": _ARCH.get(platform.machine(), platform.machine()),
        "comment": message or "Imported from -",
        "config": container_config or None,
        "created": now,
        "docker_version": f"berth-{__version__}",
        "history": [history],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [ex.diff_id]},
    }
    data = json.dumps(config, separators=(",", ":")).encode()
    try:
        image_id, _ = store.add(data, [NewLayer(ex.diff_id, ex)], tags)
    except BaseException:
        store.layers.discard(ex.staging)
        raise
    return image_id
