"""A real authorization plugin of Docker's protocol, as a process of its own on a unix socket: it
answers Plugin.Activate, AuthZPlugin.AuthZReq and AuthZPlugin.AuthZRes, and writes every request it
receives (path, headers, JSON body) as a JSON line to RECORD.

    python tests/lib/authz_plugin.py SOCKET RECORD

It denies: a container create that asks for Privileged ("privileged containers are not allowed"), a
volume create whose name starts with "forbidden-" ("that volume name is not allowed"), and the
response to a GET whose body mentions "hidden-" ("response hidden")."""

from __future__ import annotations

import base64
import json
import os
import socketserver
import sys
from http.server import BaseHTTPRequestHandler


def decide(path: str, req: dict) -> dict:
    if path == "/Plugin.Activate":
        return {"Implements": ["authz"]}
    if path == "/AuthZPlugin.AuthZReq":
        body = json.loads(base64.b64decode(req["RequestBody"])) if req.get("RequestBody") else {}
        if "/containers/create" in req.get("RequestUri", "") and (body.get("HostConfig") or {}).get("Privileged"):
            return {"Allow": False, "Msg": "privileged containers are not allowed"}
        if "/volumes/create" in req.get("RequestUri", "") and str(body.get("Name", "")).startswith("forbidden-"):
            return {"Allow": False, "Msg": "that volume name is not allowed"}
        return {"Allow": True}
    if path == "/AuthZPlugin.AuthZRes":
        body = base64.b64decode(req["ResponseBody"]) if req.get("ResponseBody") else b""
        if req.get("RequestMethod") == "GET" and b"hidden-" in body:
            return {"Allow": False, "Msg": "response hidden"}
        return {"Allow": True}
    return {"Err": f"unknown method {path}"}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        req = json.loads(raw) if raw.strip() else {}
        with open(RECORD, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers), "body": req}) + "\n")
        answer = decide(self.path, req)
        data = json.dumps(answer).encode()
        self.send_response(200 if "Err" not in answer else 500)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if __name__ == "__main__":
    SOCKET, RECORD = sys.argv[1], sys.argv[2]
    if os.path.exists(SOCKET):
        os.unlink(SOCKET)
    with Server(SOCKET, Handler) as server:
        print("ready", flush=True)
        server.serve_forever()
