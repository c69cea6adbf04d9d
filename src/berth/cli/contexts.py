"""Docker CLI contexts, on disk exactly as the docker CLI keeps them, so both tools share them.

    $DOCKER_CONFIG (default ~/.docker)/
      config.json                       {"currentContext": NAME, ...}
      contexts/meta/<sha256(NAME)>/meta.json
          {"Name": NAME, "Metadata": {"Description": ...},
           "Endpoints": {"docker": {"Host": URL, "SkipTLSVerify": bool}}}
      contexts/tls/<sha256(NAME)>/docker/{ca,cert,key}.pem
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from berth.errors import Conflict, InvalidParameter, NotFound

DEFAULT = "default"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$")
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


def config_dir(environ: dict[str, str]) -> str:
    return environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


@dataclass(slots=True)
class Context:
    name: str
    host: str
    description: str = ""
    skip_tls_verify: bool = False
    tls_files: dict[str, str] = field(default_factory=dict)  # "ca.pem" → path on disk
    metadata: dict[str, Any] = field(default_factory=dict)


class ContextStore:
    def __init__(self, environ: dict[str, str]) -> None:
        self.root = config_dir(environ)

    @staticmethod
    def _id(name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()

    def meta_dir(self, name: str) -> str:
        return os.path.join(self.root, "contexts", "meta", self._id(name))

    def tls_dir(self, name: str) -> str:
        return os.path.join(self.root, "contexts", "tls", self._id(name), "docker")

    # ---- config.json --------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.root, "config.json")) as f:
                data = json.load(f)
                return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise InvalidParameter(f"{os.path.join(self.root, 'config.json')} is not valid JSON: {exc}") from None

    def current(self) -> str:
        return str(self._config().get("currentContext") or DEFAULT)

    def set_current(self, name: str) -> None:
        cfg = self._config()
        if name == DEFAULT:
            cfg.pop("currentContext", None)
        else:
            cfg["currentContext"] = name
        os.makedirs(self.root, exist_ok=True)
        path = os.path.join(self.root, "config.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cfg, f, indent="\t")
        os.replace(tmp, path)

    # ---- contexts -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        base = os.path.join(self.root, "contexts", "meta")
        out = []
        if os.path.isdir(base):
            for d in os.listdir(base):
                try:
                    with open(os.path.join(base, d, "meta.json")) as f:
                        out.append(json.load(f)["Name"])
                except (OSError, ValueError, KeyError):
                    continue
        return sorted(out)

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.meta_dir(name), "meta.json"))

    def get(self, name: str) -> Context:
        try:
            with open(os.path.join(self.meta_dir(name), "meta.json")) as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise NotFound(f"context {name!r} does not exist") from None
        except ValueError as exc:
            raise InvalidParameter(f"context {name!r} has invalid metadata: {exc}") from None
        ep = (meta.get("Endpoints") or {}).get("docker") or {}
        tls_dir = self.tls_dir(name)
        files = {f: os.path.join(tls_dir, f) for f in TLS_FILES if os.path.isfile(os.path.join(tls_dir, f))}
        md = meta.get("Metadata") or {}
        return Context(name, ep.get("Host", ""), md.get("Description", ""), bool(ep.get("SkipTLSVerify")),
                       files, md)

    def create(self, ctx: Context) -> None:
        if ctx.name == DEFAULT or not _NAME.match(ctx.name):
            raise InvalidParameter(f"context name {ctx.name!r} is invalid: names are made of letters, digits and "
                                   "_.+-, start with a letter or digit, and \"default\" is reserved")
        if self.exists(ctx.name):
            raise Conflict(f"context {ctx.name!r} already exists")
        meta_dir = self.meta_dir(ctx.name)
        os.makedirs(meta_dir, mode=0o755, exist_ok=True)
        metadata: dict[str, Any] = dict(ctx.metadata)
        if ctx.description:
            metadata["Description"] = ctx.description
        meta = {"Name": ctx.name, "Metadata": metadata,
                "Endpoints": {"docker": {"Host": ctx.host, "SkipTLSVerify": ctx.skip_tls_verify}}}
        try:
            if ctx.tls_files:
                tls_dir = self.tls_dir(ctx.name)
                os.makedirs(tls_dir, mode=0o700, exist_ok=True)
                for fname, src in ctx.tls_files.items():
                    dst = os.path.join(tls_dir, fname)
                    shutil.copyfile(src, dst)
                    os.chmod(dst, 0o600 if fname == "key.pem" else 0o644)
            with open(os.path.join(meta_dir, "meta.json"), "w") as f:
                json.dump(meta, f)
        except OSError as exc:
            self.remove(ctx.name)
            raise InvalidParameter(f"could not create context {ctx.name!r}: {exc}") from None

    def remove(self, name: str) -> None:
        shutil.rmtree(self.meta_dir(name), ignore_errors=True)
        shutil.rmtree(os.path.dirname(self.tls_dir(name)), ignore_errors=True)
