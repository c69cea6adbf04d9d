"""berth context create | ls | use | rm | inspect, sharing the docker CLI's context store."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from berth.cli.contexts import DEFAULT, TLS_FILES, Context, ContextStore
from berth.cli.hosts import default_endpoint, normalize_host
from berth.cli.main import CLI
from berth.cli.templates import render
from berth.errors import Conflict, InvalidParameter, NotFound


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    c = sub.add_parser("create", help="Create a context")
    c.add_argument("name")
    c.add_argument("--description", default="")
    c.add_argument("--docker", default="", help="host=URL,ca=PATH,cert=PATH,key=PATH,skip-tls-verify=BOOL")
    c.add_argument("--from", dest="from_", help="create the context from an existing one")
    ls = sub.add_parser("ls", aliases=["list"], help="List contexts")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--format")
    u = sub.add_parser("use", help="Set the current context")
    u.add_argument("name")
    rm = sub.add_parser("rm", aliases=["remove"], help="Remove one or more contexts")
    rm.add_argument("names", nargs="+")
    rm.add_argument("-f", "--force", action="store_true")
    ins = sub.add_parser("inspect", help="Display detailed information on one or more contexts")
    ins.add_argument("names", nargs="*")
    ins.add_argument("-f", "--format")
    sub.add_parser("show", help="Print the name of the current context")


def _parse_docker_opt(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("host", "ca", "cert", "key", "skip-tls-verify", "from"):
            raise InvalidParameter(f"invalid --docker option {part!r}: use host=, ca=, cert=, key=, "
                                   "skip-tls-verify= or from=")
        out[key] = value.strip()
    return out


def _current(cli: CLI, store: ContextStore) -> str:
    env = cli.environ
    if env.get("DOCKER_HOST"):
        return DEFAULT
    return env.get("DOCKER_CONTEXT") or store.current()


def _default_context(cli: CLI) -> Context:
    ep = default_endpoint(cli.conn_opts, cli.environ)
    files = {}
    if ep.tls is not None:
        files = {n: p for n, p in zip(TLS_FILES, (ep.tls.ca, ep.tls.cert, ep.tls.key), strict=True) if p}
    return Context(DEFAULT, ep.host, "Current DOCKER_HOST based configuration",
                   skip_tls_verify=bool(ep.tls and not ep.tls.verify), tls_files=files)


def _load(cli: CLI, store: ContextStore, name: str) -> Context:
    return _default_context(cli) if name == DEFAULT else store.get(name)


def create(cli: CLI, store: ContextStore, opts: argparse.Namespace) -> int:
    d = _parse_docker_opt(opts.docker)
    source = opts.from_ or d.get("from")
    if source:
        base = _load(cli, store, source)
        ctx = Context(opts.name, base.host, opts.description or base.description, base.skip_tls_verify,
                      dict(base.tls_files))
    elif not d.get("host"):
        base = _default_context(cli)  # docker: no --docker means "like the current default endpoint"
        ctx = Context(opts.name, base.host, opts.description, base.skip_tls_verify, dict(base.tls_files))
    else:
        normalize_host(d["host"], False)  # validates; the context keeps the address as written, as docker does
        ctx = Context(opts.name, d["host"], opts.description)
    if "skip-tls-verify" in d:
        ctx.skip_tls_verify = d["skip-tls-verify"].lower() in ("1", "true", "yes")
    for key, fname in (("ca", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem")):
        if key in d:
            path = os.path.expanduser(d[key])
            if not os.path.isfile(path):
                raise InvalidParameter(f"unable to read {key} file {path}: no such file")
            ctx.tls_files[fname] = path
    store.create(ctx)
    print(opts.name, file=cli.out)
    print(f'Successfully created context "{opts.name}"', file=cli.err)
    return 0


def _ls_rows(cli: CLI, store: ContextStore) -> list[dict[str, Any]]:
    current = _current(cli, store)
    rows = []
    for name in [DEFAULT, *store.names()]:
        try:
            ctx = _load(cli, store, name)
            err = ""
        except (NotFound, InvalidParameter) as exc:
            ctx, err = Context(name, ""), exc.message
        rows.append({"Name": name, "Description": ctx.description, "DockerEndpoint": ctx.host,
                     "Current": name == current, "Error": err})
    return rows


def ls(cli: CLI, store: ContextStore, opts: argparse.Namespace) -> int:
    rows = _ls_rows(cli, store)
    if opts.quiet:
        for r in rows:
            print(r["Name"], file=cli.out)
        return 0
    if opts.format == "json":
        for r in rows:
            print(json.dumps(r), file=cli.out)
        return 0
    if opts.format:
        for r in rows:
            print(render(opts.format, r), file=cli.out)
        return 0
    table = [("NAME", "DESCRIPTION", "DOCKER ENDPOINT", "ERROR")]
    table += [(r["Name"] + (" *" if r["Current"] else ""), r["Description"], r["DockerEndpoint"], r["Error"])
              for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("   ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "   " + row[3], file=cli.out)
    return 0


def use(cli: CLI, store: ContextStore, opts: argparse.Namespace) -> int:
    if opts.name != DEFAULT and not store.exists(opts.name):
        raise NotFound(f"context {opts.name!r} does not exist")
    store.set_current(opts.name)
    print(opts.name, file=cli.out)
    print(f'Current context is now "{opts.name}"', file=cli.err)
    if cli.environ.get("DOCKER_HOST"):
        print("Warning: DOCKER_HOST environment variable overrides the active context. "
              "To use a context, either set the global --context flag, or unset DOCKER_HOST environment variable.",
              file=cli.err)
    return 0


def rm(cli: CLI, store: ContextStore, opts: argparse.Namespace) -> int:
    failed = False
    current = store.current()
    for name in opts.names:
        try:
            if name == DEFAULT:
                raise Conflict("default: context \"default\" cannot be removed")
            if not store.exists(name):
                if opts.force:
                    continue
                raise NotFound(f"context {name!r} does not exist")
            if name == current:
                if not opts.force:
                    raise Conflict(f"context {name!r} is in use, set -f flag to force remove")
                store.set_current(DEFAULT)
            store.remove(name)
            print(name, file=cli.out)
        except (Conflict, NotFound) as exc:
            print(exc.message, file=cli.err)
            failed = True
    return 1 if failed else 0


def inspect(cli: CLI, store: ContextStore, opts: argparse.Namespace) -> int:
    names = opts.names or [_current(cli, store)]
    out = []
    for name in names:
        ctx = _load(cli, store, name)
        if name == DEFAULT:
            storage = {"MetadataPath": "<IN MEMORY>", "TLSPath": "<IN MEMORY>"}
        else:
            storage = {"MetadataPath": store.meta_dir(name), "TLSPath": os.path.dirname(store.tls_dir(name))}
        item = {"Name": name,
                "Metadata": ({"Description": ctx.description} if ctx.description else {}),
                "Endpoints": {"docker": {"Host": ctx.host, "SkipTLSVerify": ctx.skip_tls_verify}},
                "TLSMaterial": ({"docker": sorted(ctx.tls_files)} if ctx.tls_files else {}),
                "Storage": storage}
        out.append(item)
    if opts.format:
        for item in out:
            print(render(opts.format, item) if opts.format != "json" else json.dumps(item), file=cli.out)
    else:
        print(json.dumps(out, indent=4), file=cli.out)
    return 0


def run(cli: CLI, opts: argparse.Namespace) -> int:
    store = ContextStore(cli.environ)
    if opts.sub == "show":
        print(_current(cli, store), file=cli.out)
        return 0
    handler = {"create": create, "ls": ls, "list": ls, "use": use, "rm": rm, "remove": rm, "inspect": inspect}[opts.sub]
    return handler(cli, store, opts)

