"""Every Engine API route's action name: the vocabulary of authorization policies and the audit log.

One table, used by the router (a route without an entry here does not load) and by ``berth policy
check`` (which validates a policy without a daemon). Names are stable: ``resource.verb``, and a
GET route's name covers its HEAD too. ``methods()`` gives each action its method; an action that
any non-GET route has counts as a write (``container.attach`` is POST /attach and GET /attach/ws).
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[a-z]+(\.[a-z]+)+\Z")

# (method, route pattern, action)
CATALOGUE: tuple[tuple[str, str, str], ...] = (
    ("GET", "/_ping", "system.ping"),
    ("GET", "/version", "system.version"),
    ("GET", "/info", "system.info"),
    ("GET", "/events", "system.events"),
    ("POST", "/berth/policy/explain", "system.policy.explain"),
    ("GET", "/images/json", "image.list"),
    ("POST", "/images/create", "image.create"),
    ("POST", "/auth", "registry.login"),
    ("GET", "/images/search", "registry.search"),
    ("POST", "/images/{name:path}/push", "image.push"),
    ("GET", "/distribution/{name:path}/json", "registry.inspect"),
    ("POST", "/images/load", "image.load"),
    ("POST", "/build", "image.build"),
    ("POST", "/build/prune", "builder.prune"),
    ("GET", "/images/get", "image.save"),
    ("POST", "/images/prune", "image.prune"),
    ("GET", "/images/{name:path}/json", "image.inspect"),
    ("GET", "/images/{name:path}/history", "image.history"),
    ("GET", "/images/{name:path}/get", "image.save"),
    ("POST", "/images/{name:path}/tag", "image.tag"),
    ("DELETE", "/images/{name:path}", "image.remove"),
    ("GET", "/system/df", "system.df"),
    ("GET", "/containers/{id}/stats", "container.stats"),
    ("GET", "/containers/{id}/export", "container.export"),
    ("GET", "/containers/{id}/changes", "container.changes"),
    ("POST", "/containers/{id}/update", "container.update"),
    ("GET", "/containers/{id}/archive", "container.archive.read"),
    ("PUT", "/containers/{id}/archive", "container.archive.write"),
    ("POST", "/containers/{id}/pause", "container.pause"),
    ("POST", "/containers/{id}/unpause", "container.unpause"),
    ("POST", "/containers/{id}/rename", "container.rename"),
    ("GET", "/containers/{id}/top", "container.top"),
    ("POST", "/containers/{id}/resize", "container.resize"),
    ("POST", "/containers/create", "container.create"),
    ("GET", "/containers/json", "container.list"),
    ("POST", "/containers/prune", "container.prune"),
    ("GET", "/containers/{id}/json", "container.inspect"),
    ("POST", "/containers/{id}/start", "container.start"),
    ("POST", "/containers/{id}/wait", "container.wait"),
    ("POST", "/containers/{id}/stop", "container.stop"),
    ("POST", "/containers/{id}/kill", "container.kill"),
    ("POST", "/containers/{id}/restart", "container.restart"),
    ("POST", "/containers/{id}/attach", "container.attach"),
    ("GET", "/containers/{id}/attach/ws", "container.attach"),
    ("GET", "/containers/{id}/logs", "container.logs"),
    ("DELETE", "/containers/{parent}/{alias}", "container.remove"),
    ("POST", "/commit", "container.commit"),
    ("DELETE", "/containers/{id}", "container.remove"),
    ("POST", "/containers/{id}/exec", "container.exec"),
    ("POST", "/exec/{id}/start", "container.exec"),
    ("GET", "/exec/{id}/json", "container.exec.inspect"),
    ("POST", "/exec/{id}/resize", "container.exec.resize"),
    ("POST", "/volumes/create", "volume.create"),
    ("GET", "/volumes", "volume.list"),
    ("POST", "/volumes/prune", "volume.prune"),
    ("GET", "/volumes/{name}", "volume.inspect"),
    ("DELETE", "/volumes/{name}", "volume.remove"),
    ("POST", "/networks/create", "network.create"),
    ("GET", "/networks", "network.list"),
    ("POST", "/networks/prune", "network.prune"),
    ("GET", "/networks/{id}", "network.inspect"),
    ("DELETE", "/networks/{id}", "network.remove"),
    ("POST", "/networks/{id}/connect", "network.connect"),
    ("POST", "/networks/{id}/disconnect", "network.disconnect"),
    ("GET", "/swarm", "swarm.inspect"),
    ("POST", "/swarm/update", "swarm.update"),
    ("GET", "/swarm/unlockkey", "swarm.unlockkey"),
    ("POST", "/swarm/unlock", "swarm.unlock"),
    ("GET", "/nodes", "swarm.node.list"),
    ("GET", "/nodes/{id}", "swarm.node.inspect"),
    ("DELETE", "/nodes/{id}", "swarm.node.remove"),
    ("POST", "/nodes/{id}/update", "swarm.node.update"),
    ("GET", "/services", "swarm.service.list"),
    ("POST", "/services/create", "swarm.service.create"),
    ("GET", "/services/{id}", "swarm.service.inspect"),
    ("DELETE", "/services/{id}", "swarm.service.remove"),
    ("POST", "/services/{id}/update", "swarm.service.update"),
    ("GET", "/services/{id}/logs", "swarm.service.logs"),
    ("GET", "/tasks", "swarm.task.list"),
    ("GET", "/tasks/{id}", "swarm.task.inspect"),
    ("GET", "/tasks/{id}/logs", "swarm.task.logs"),
    ("GET", "/secrets", "swarm.secret.list"),
    ("POST", "/secrets/create", "swarm.secret.create"),
    ("GET", "/secrets/{id}", "swarm.secret.inspect"),
    ("DELETE", "/secrets/{id}", "swarm.secret.remove"),
    ("POST", "/secrets/{id}/update", "swarm.secret.update"),
    ("GET", "/configs", "swarm.config.list"),
    ("POST", "/configs/create", "swarm.config.create"),
    ("GET", "/configs/{id}", "swarm.config.inspect"),
    ("DELETE", "/configs/{id}", "swarm.config.remove"),
    ("POST", "/configs/{id}/update", "swarm.config.update"),
    ("POST", "/swarm/leave", "swarm.leave"),
    ("POST", "/swarm/init", "swarm.init"),
    ("POST", "/swarm/join", "swarm.join"),
    ("GET", "/plugins", "plugin.list"),
    ("GET", "/plugins/{name:path}/json", "plugin.inspect"),
    ("DELETE", "/plugins/{name:path}", "plugin.remove"),
    ("POST", "/plugins/{name:path}/enable", "plugin.enable"),
    ("POST", "/plugins/{name:path}/disable", "plugin.disable"),
    ("POST", "/plugins/{name:path}/upgrade", "plugin.upgrade"),
    ("POST", "/plugins/{name:path}/push", "plugin.push"),
    ("POST", "/plugins/{name:path}/set", "plugin.set"),
    ("GET", "/plugins/privileges", "plugin.privileges"),
    ("POST", "/plugins/pull", "plugin.pull"),
    ("POST", "/plugins/create", "plugin.create"),
)
_BY_ROUTE = {(m, p): a for m, p, a in CATALOGUE}


def action_of(method: str, pattern: str) -> str:
    """The action of the route (method, pattern); KeyError when the catalogue has none."""
    return _BY_ROUTE[(method, pattern)]


def methods() -> dict[str, str]:
    """action → "GET" when every route of it is a GET, else its first other method."""
    out: dict[str, str] = {}
    for method, _, action in CATALOGUE:
        if out.get(action, "GET") == "GET":
            out[action] = method
    return out


def check_names() -> list[str]:
    """Names that break the ``resource.verb`` form (the unit tests keep this empty)."""
    return [a for _, _, a in CATALOGUE if not _NAME.match(a)]
