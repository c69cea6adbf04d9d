"""docker search against a registry's v1 search endpoint (a small one served here on loopback: Docker
Hub's index has one, distribution has none), its filters, and a registry without one."""

from __future__ import annotations

import http.server
import json
import threading
from urllib.parse import parse_qs, urlsplit

from tests.lib.cleanup import Cleanup
from tests.lib.clis import docker_at
from tests.lib.daemon import Berthd
from tests.lib.registry import Registry, start_registry

RESULTS = [{"name": "team/app", "description": "the app", "star_count": 12, "is_official": False,
            "is_automated": False},
           {"name": "library/app", "description": "an official one", "star_count": 3400, "is_official": True,
            "is_automated": False}]


def _search_server(cleanup: Cleanup) -> tuple[str, list[dict[str, list[str]]]]:
    asked: list[dict[str, list[str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            u = urlsplit(self.path)
            q = parse_qs(u.query)
            asked.append(q)
            found = [r for r in RESULTS if q.get("q", [""])[0] in r["name"]]
            body = json.dumps({"num_results": len(found), "query": q.get("q", [""])[0], "results": found}).encode()
            self.send_response(200 if u.path == "/v1/search" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cleanup.add("search server", httpd.shutdown)
    return f"127.0.0.1:{httpd.server_address[1]}", asked


def test_search_and_its_filters(berthd: Berthd, cleanup: Cleanup) -> None:
    host, asked = _search_server(cleanup)
    r = docker_at(berthd, "search", f"{host}/app")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]  # newer CLIs drop AUTOMATED
    assert any(line.startswith("team/app") and "12" in line for line in lines[1:])
    assert asked[-1]["q"] == ["app"] and asked[-1]["n"] == ["25"]
    r = docker_at(berthd, "search", "--filter", "stars=100", "--format", "{{.Name}}", f"{host}/app")
    assert r.stdout.split() == ["library/app"], r.stderr
    r = docker_at(berthd, "search", "--filter", "is-official=false", "--format", "{{.Name}}", f"{host}/app")
    assert r.stdout.split() == ["team/app"], r.stderr
    r = docker_at(berthd, "search", "--limit", "500", f"{host}/app")
    assert r.returncode != 0 and "limit 500 is outside the range of [1, 100]" in r.stderr


def test_a_registry_without_search_says_so(berthd: Berthd, cleanup: Cleanup) -> None:
    reg: Registry = start_registry(cleanup)
    r = docker_at(berthd, "search", f"{reg.host}/app")
    assert r.returncode != 0 and "Unexpected status code 404" in r.stderr, r.stderr


def test_berth_search(berthd: Berthd, cleanup: Cleanup) -> None:
    from tests.lib.clis import base_env, berth

    host, _ = _search_server(cleanup)
    r = berth("search", "--filter", "is-official=true", f"{host}/app", env=base_env(DOCKER_HOST=berthd.url))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    assert r.stdout.splitlines()[1].split()[0] == "library/app" and len(r.stdout.splitlines()) == 2
