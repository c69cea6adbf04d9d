"""Registry credentials where the docker CLI keeps them: ``config.json`` in DOCKER_CONFIG (or
~/.docker), in ``auths`` (base64 ``user:password``, or an identity token), or in a credential helper
(``credsStore`` for every registry, ``credHelpers`` per registry: ``docker-credential-NAME``
get/store/erase, JSON on stdin and stdout, as the docker CLI speaks to them).

Docker Hub's key is ``https://index.docker.io/v1/``, as the docker CLI writes it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.cli.contexts import config_dir
from berth.errors import InvalidParameter, NotFound

HUB_KEY = "https://index.docker.io/v1/"
HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", HUB_KEY, "https://index.docker.io/v1")


def server_key(server: str) -> str:
    """How config.json names a registry: Docker Hub by its index URL, others by host[:port]."""
    s = server.strip()
    if not s or s in HUB_NAMES:
        return HUB_KEY
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    return s.split("/", 1)[0]


def registry_of(image: str) -> str:
    """The registry part of an image name, as config.json keys it."""
    first, sep, _rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return server_key(first)
    return HUB_KEY


@dataclass(frozen=True)
class Credential:
    username: str
    secret: str  # a password, or an identity token when username is "<token>"

    def auth_config(self, server: str) -> dict[str, str]:
        """What docker-py sends as X-Registry-Auth."""
        if self.username == "<token>":
            return {"identitytoken": self.secret, "serveraddress": server}
        return {"username": self.username, "password": self.secret, "serveraddress": server}


class Store:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.dir = config_dir(dict(environ))
        self.path = os.path.join(self.dir, "config.json")

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise InvalidParameter(f"{self.path} is not valid JSON: {exc}") from None
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, Any]) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
        os.replace(tmp, self.path)

    def _helper(self, data: dict[str, Any], key: str) -> str | None:
        helpers = data.get("credHelpers") or {}
        name = helpers.get(key) if isinstance(helpers, dict) else None
        name = name or data.get("credsStore")
        return str(name) if name else None

    @staticmethod
    def _run_helper(name: str, action: str, payload: str) -> str:
        exe = shutil.which(f"docker-credential-{name}")
        if exe is None:
            raise NotFound(f"the credential helper docker-credential-{name} (config.json) is not installed")
        r = subprocess.run([exe, action], input=payload, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            words = (r.stdout or r.stderr).strip()
            if action == "get" and "credentials not found" in words.lower():
                return ""
            raise InvalidParameter(f"docker-credential-{name} {action}: {words[:300]}")
        return r.stdout

    def get(self, server: str) -> Credential | None:
        key = server_key(server)
        data = self._load()
        helper = self._helper(data, key)
        if helper:
            out = self._run_helper(helper, "get", key)
            if not out:
                return None
            got = json.loads(out)
            return Credential(str(got.get("Username") or ""), str(got.get("Secret") or ""))
        entry = (data.get("auths") or {}).get(key) or {}
        if entry.get("identitytoken"):
            return Credential("<token>", str(entry["identitytoken"]))
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return Credential(user, password)
        return None

    def put(self, server: str, cred: Credential) -> bool:
        """Keep ``cred``; True when it went to config.json in the clear (the CLI warns then)."""
        key = server_key(server)
        data = self._load()
        helper = self._helper(data, key)
        if helper:
            self._run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": cred.username,
                                                          "Secret": cred.secret}))
            data.setdefault("auths", {})[key] = {}
            self._save(data)
            return False
        entry: dict[str, str] = {}
        if cred.username == "<token>":
            entry["identitytoken"] = cred.secret
        else:
            entry["auth"] = base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode()
        data.setdefault("auths", {})[key] = entry
        self._save(data)
        return True

    def erase(self, server: str) -> bool:
        key = server_key(server)
        data = self._load()
        helper = self._helper(data, key)
        had = key in (data.get("auths") or {})
        if helper:
            self._run_helper(helper, "erase", key)
        if had:
            del data["auths"][key]
            self._save(data)
        return had or bool(helper)
