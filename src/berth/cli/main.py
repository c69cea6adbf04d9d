"""berth's entry point: global options, a lazily imported command, and one place that turns
exceptions into messages and exit codes (a traceback only with --debug)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from berth import __version__
from berth.cli.hosts import ConnectionOptions, Endpoint, resolve
from berth.errors import BerthError

# command word → (module under berth.cli.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("version", "Show the berth version information"),
    "info": ("info", "Display system-wide information"),
    "events": ("events", "Get real time events from the server"),
    "system": ("system", "Manage berth (info, events, dial-stdio)"),
    "context": ("context", "Manage contexts"),
    "pki": ("pki", "Make the CA, server and client certificates for mutual TLS"),
    "machine": ("machine", "Manage remote berth hosts (docker-machine's store)"),
    "policy": ("policy", "Check an authorization policy, and explain which rule decides a request"),
    "audit": ("audit", "Verify, tail and search the daemon's audit log"),
    "image": ("image", "Manage images"),
    "images": ("image", "List images"),
    "import": ("image", "Import the contents from a tarball to create a filesystem image"),
    "load": ("image", "Load an image from a tar archive or STDIN"),
    "save": ("image", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "history": ("image", "Show the history of an image"),
    "tag": ("image", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "rmi": ("image", "Remove one or more images"),
    "pull": ("registry", "Download an image from a registry"),
    "push": ("registry", "Upload an image to a registry"),
    "login": ("registry", "Log in to a registry (credentials kept as the docker CLI keeps them)"),
    "logout": ("registry", "Log out from a registry"),
    "search": ("registry", "Search a registry for images"),
    "container": ("container", "Manage containers"),
    "run": ("container", "Create and run a new container from an image"),
    "create": ("container", "Create a new container"),
    "start": ("container", "Start one or more stopped containers"),
    "ps": ("container", "List containers"),
    "logs": ("container", "Fetch the logs of a container"),
    "stop": ("container", "Stop one or more running containers"),
    "kill": ("container", "Kill one or more running containers"),
    "restart": ("container", "Restart one or more containers"),
    "rm": ("container", "Remove one or more containers"),
    "wait": ("container", "Block until one or more containers stop, then print their exit codes"),
    "attach": ("container", "Attach local standard input, output, and error streams to a running container"),
    "exec": ("extra", "Execute a command in a running container"),
    "cp": ("extra", "Copy files between a container and the local filesystem"),
    "top": ("extra", "Display the running processes of a container"),
    "stats": ("extra", "Display resource usage statistics of containers"),
    "pause": ("extra", "Pause all processes within one or more containers"),
    "unpause": ("extra", "Unpause all processes within one or more containers"),
    "rename": ("extra", "Rename a container"),
    "diff": ("extra", "Inspect changes to files on a container's filesystem"),
    "export": ("extra", "Export a container's filesystem as a tar archive"),
    "volume": ("extra", "Manage volumes"),
    "network": ("network", "Manage networks"),
    "port": ("network", "List port mappings or a specific mapping for the container"),
}
_VALUE_OPTS = {"-H", "--host", "-c", "--context", "--tlscacert", "--tlscert", "--tlskey", "-l", "--log-level",
               "--config"}


@dataclass
class CLI:
    """What a command gets: its streams, the environment, and the connection to the daemon."""

    conn_opts: ConnectionOptions
    environ: dict[str, str]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    debug: bool = False
    _client: Any = None
    _endpoint: Endpoint | None = None

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = resolve(self.conn_opts, self.environ)
        return self._endpoint

    def client(self) -> Any:
        if self._client is None:
            from berth.cli.client import make_client

            self._client = make_client(self.endpoint, self.environ)
        return self._client


def _bool_opt(text: str) -> bool:
    return text.strip().lower() in ("1", "t", "true", "yes", "on")


def global_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth", add_help=False,
                                description="berth: the client of berthd, with docker's syntax.")
    p.add_argument("-H", "--host", action="append", default=[], help="daemon socket to connect to")
    p.add_argument("-c", "--context", help="name of the context to use (overrides DOCKER_HOST and DOCKER_CONTEXT)")
    p.add_argument("--tls", nargs="?", const=True, default=None, type=_bool_opt, help="use TLS; implied by --tlsverify")
    p.add_argument("--tlsverify", nargs="?", const=True, default=None, type=_bool_opt,
                   help="use TLS and verify the remote")
    p.add_argument("--tlscacert", help="trust certs signed only by this CA")
    p.add_argument("--tlscert", help="path to TLS certificate file")
    p.add_argument("--tlskey", help="path to TLS key file")
    p.add_argument("--config", help="location of client config files (DOCKER_CONFIG)")
    p.add_argument("-D", "--debug", action="store_true", help="enable debug mode")
    p.add_argument("-l", "--log-level", default="info", help="set the logging level")
    p.add_argument("-v", "--version", action="store_true", help="print version information and quit")
    p.add_argument("-h", "--help", action="store_true")
    return p


def _split_command(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            return argv[:i], a, argv[i + 1:]
        if a in _VALUE_OPTS:
            i += 2
            continue
        i += 1
    return argv[:i], (argv[i] if i < len(argv) else None), argv[i + 1:]


def usage() -> str:
    lines = ["Usage:  berth [OPTIONS] COMMAND", "", "Commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Global options: -H/--host, -c/--context, --tls, --tlsverify, --tlscacert, --tlscert, --tlskey,",
              "  --config, -D/--debug. Environment: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH,",
              "  DOCKER_API_VERSION, DOCKER_CONTEXT, DOCKER_CONFIG.", "",
              "Run 'berth COMMAND --help' for more information on a command."]
    return "\n".join(lines)


def run(argv: list[str], environ: dict[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    global_args, command, rest = _split_command(argv)
    gp = global_parser()
    try:
        g = gp.parse_args(global_args)
    except SystemExit as exc:
        return int(exc.code or 0) or 125
    if g.version:
        print(f"berth version {__version__}")
        return 0
    if command is None or g.help:
        print(usage())
        return 0 if g.help or command is None and not argv else 1
    if command not in COMMANDS:
        print(f"berth: '{command}' is not a berth command.\nSee 'berth --help'", file=sys.stderr)
        return 1
    if g.config:
        env["DOCKER_CONFIG"] = g.config
    conn = ConnectionOptions(g.host, g.context, g.tls, g.tlsverify, g.tlscacert, g.tlscert, g.tlskey)
    cli = CLI(conn, env, debug=g.debug)
    module = importlib.import_module(f"berth.cli.commands.{COMMANDS[command][0]}")
    parser = argparse.ArgumentParser(prog=f"berth {command}", description=COMMANDS[command][1],
                                     conflict_handler="resolve")  # `run -h` is --hostname, as in docker
    alias = getattr(module, "ALIASES", {}).get(command)
    if alias is not None:  # a top-level alias of a sub-command: "berth images" = "berth image ls"
        module.add_verb_arguments(alias, parser)
        parser.set_defaults(verb=alias)
    else:
        module.add_arguments(parser)
    try:
        opts = parser.parse_args(rest)
    except SystemExit as exc:
        return int(exc.code or 0)
    return _guarded(lambda: module.run(cli, opts), cli)


def _guarded(fn: Callable[[], int | None], cli: CLI) -> int:
    import docker.errors

    from berth.cli.client import check_api_error, connect_error

    try:
        return fn() or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except BerthError as exc:
        print(exc.message, file=cli.err)
    except docker.errors.APIError as exc:
        print(check_api_error(exc), file=cli.err)
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        import requests

        if isinstance(exc, (requests.exceptions.ConnectionError, OSError)):
            print(connect_error(exc, cli.endpoint).message, file=cli.err)
        elif isinstance(exc, docker.errors.DockerException):
            print(str(exc), file=cli.err)
        else:
            print(f"berth: unexpected error: {type(exc).__name__}: {exc}", file=cli.err)
        if cli.debug:
            import traceback

            traceback.print_exc()
    return 1


def main() -> None:
    sys.exit(run(sys.argv[1:]))
