"""Swarm, nodes, services, tasks, secrets, configs and plugins, answered as dockerd answers them on a
node that is not in a swarm and has no plugins: clients depend on the exact status and words (docker-py's
``leave_swarm(force=True)`` takes a 503 as "not in a swarm"; the docker CLI prints the message).

berth does not run swarm mode or managed plugins: ``swarm init``/``join`` and plugin installation
answer 501 and say so."""

from __future__ import annotations

from berth.api.http import Request, Response
from berth.api.router import Route, route
from berth.errors import NotFound, NotSupported, Unavailable

# dockerd's words (daemon/cluster/cluster.go errNoManager and errors.go errNoSwarm)
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                 "this node to swarm and try again.")
NOT_IN_A_SWARM = "This node is not part of a swarm"
NO_SWARM_MODE = "berth does not support swarm mode"

# Every route a swarm manager serves; inactive, each answers 503 NOT_A_MANAGER.
_MANAGER_ROUTES = (
    ("GET", "/swarm"), ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"), ("POST", "/swarm/unlock"),
    ("GET", "/nodes"), ("GET", "/nodes/{id}"), ("DELETE", "/nodes/{id}"), ("POST", "/nodes/{id}/update"),
    ("GET", "/services"), ("POST", "/services/create"), ("GET", "/services/{id}"), ("DELETE", "/services/{id}"),
    ("POST", "/services/{id}/update"), ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"), ("GET", "/tasks/{id}"), ("GET", "/tasks/{id}/logs"),
    ("GET", "/secrets"), ("POST", "/secrets/create"), ("GET", "/secrets/{id}"), ("DELETE", "/secrets/{id}"),
    ("POST", "/secrets/{id}/update"),
    ("GET", "/configs"), ("POST", "/configs/create"), ("GET", "/configs/{id}"), ("DELETE", "/configs/{id}"),
    ("POST", "/configs/{id}/update"),
)

_PLUGIN_ROUTES = (
    ("GET", "/plugins/{name:path}/json"), ("DELETE", "/plugins/{name:path}"), ("POST", "/plugins/{name:path}/enable"),
    ("POST", "/plugins/{name:path}/disable"), ("POST", "/plugins/{name:path}/upgrade"),
    ("POST", "/plugins/{name:path}/push"),
    ("POST", "/plugins/{name:path}/set"),
)


def routes() -> list[Route]:
    def not_a_manager(req: Request) -> Response:
        raise Unavailable(NOT_A_MANAGER)

    def leave(req: Request) -> Response:
        raise Unavailable(NOT_IN_A_SWARM)

    def no_swarm_mode(req: Request) -> Response:
        raise NotSupported(NO_SWARM_MODE)

    def plugins(req: Request) -> Response:
        return Response.json([])

    def no_such_plugin(req: Request) -> Response:
        raise NotFound(f'plugin "{req.params["name"]}" not found')

    def no_plugin_install(req: Request) -> Response:
        raise NotSupported("berth does not install managed plugins")

    return [
        *(route(m, p, not_a_manager) for m, p in _MANAGER_ROUTES),
        route("POST", "/swarm/leave", leave),
        route("POST", "/swarm/init", no_swarm_mode),
        route("POST", "/swarm/join", no_swarm_mode),
        route("GET", "/plugins", plugins),
        *(route(m, p, no_such_plugin) for m, p in _PLUGIN_ROUTES),
        route("GET", "/plugins/privileges", no_plugin_install),
        route("POST", "/plugins/pull", no_plugin_install),
        route("POST", "/plugins/create", no_plugin_install),
    ]
