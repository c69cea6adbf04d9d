"""berth pull | push | login | logout: registries, with docker's flags and docker's credential store."""

from __future__ import annotations

import argparse
import sys

from berth.cli import credentials
from berth.cli.main import CLI
from berth.errors import InvalidParameter

ALIASES = {"pull": "pull", "push": "push", "login": "login", "logout": "logout", "search": "search"}


def add_verb_arguments(verb: str, p: argparse.ArgumentParser) -> None:
    if verb == "pull":
        p.add_argument("name")
        p.add_argument("--platform", default="")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("-a", "--all-tags", action="store_true")
    elif verb == "push":
        p.add_argument("name")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("-a", "--all-tags", action="store_true")
    elif verb == "login":
        p.add_argument("server", nargs="?", default="")
        p.add_argument("-u", "--username", default="")
        p.add_argument("-p", "--password", default="")
        p.add_argument("--password-stdin", action="store_true")
    elif verb == "logout":
        p.add_argument("server", nargs="?", default="")
    elif verb == "search":
        p.add_argument("term")
        p.add_argument("--limit", type=int, default=25)
        p.add_argument("-f", "--filter", action="append", default=[])
        p.add_argument("--format")
        p.add_argument("--no-trunc", action="store_true")


def add_arguments(p: argparse.ArgumentParser) -> None:  # only reached through the aliases
    sub = p.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in ALIASES:
        add_verb_arguments(verb, sub.add_parser(verb))


def _split(name: str) -> tuple[str, str]:
    """repository and tag (or digest) as docker-py wants them."""
    if "@" in name:
        repo, _, digest = name.partition("@")
        return repo, digest
    slash, colon = name.rfind("/"), name.rfind(":")
    return (name[:colon], name[colon + 1:]) if colon > slash else (name, "")


def _auth(cli: CLI, name: str) -> dict[str, str] | None:
    server = credentials.registry_of(name)
    cred = credentials.Store(cli.environ).get(server)
    return cred.auth_config(server) if cred else None


def run(cli: CLI, opts: argparse.Namespace) -> int:
    from berth.cli.progress import StreamError, show_stream
    from berth.image import reference

    client = cli.client()
    if opts.verb == "pull":
        repo, tag = _split(opts.name)
        if opts.all_tags and tag:
            raise InvalidParameter("tag can't be used with --all-tags/-a")
        stream = client.pull(repo, None if opts.all_tags else (tag or "latest"), all_tags=opts.all_tags, stream=True,
                             decode=True, platform=opts.platform or None, auth_config=_auth(cli, opts.name))
        if opts.quiet:
            for m in stream:
                if "error" in m or "errorDetail" in m:
                    raise StreamError(str(m.get("error") or m["errorDetail"].get("message")))
        else:
            show_stream(cli, stream)
        print(str(reference.parse(opts.name, default_tag=not opts.all_tags)), file=cli.out)  # the full name
        return 0
    if opts.verb == "push":
        repo, tag = _split(opts.name)
        stream = client.push(repo, tag or None, stream=True, decode=True, auth_config=_auth(cli, opts.name))
        return show_stream(cli, stream)
    if opts.verb == "login":
        return _login(cli, opts)
    if opts.verb == "search":
        return _search(cli, opts)
    server = opts.server or credentials.HUB_KEY
    key = credentials.server_key(server)
    if credentials.Store(cli.environ).erase(server):
        print(f"Removing login credentials for {key}", file=cli.out)
    else:
        print(f"Not logged in to {key}", file=cli.out)
    return 0


def _login(cli: CLI, opts: argparse.Namespace) -> int:
    if opts.password and opts.password_stdin:
        raise InvalidParameter("--password and --password-stdin are mutually exclusive")
    password = opts.password
    if opts.password_stdin:
        if not opts.username:
            raise InvalidParameter("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\n").rstrip("\r")
    if not opts.username or not password:
        raise InvalidParameter("berth login needs --username and a password (--password-stdin or --password)")
    if opts.password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=cli.err)
    server = opts.server or credentials.HUB_KEY
    answer = cli.client().login(opts.username, password, registry=server, reauth=True)
    token = str(answer.get("IdentityToken") or "")
    cred = credentials.Credential("<token>", token) if token else credentials.Credential(opts.username, password)
    if credentials.Store(cli.environ).put(server, cred):
        print(f"WARNING! Your password will be stored unencrypted in {credentials.Store(cli.environ).path}.",
              file=cli.err)
    print(answer.get("Status") or "Login Succeeded", file=cli.out)
    return 0


def _search(cli: CLI, opts: argparse.Namespace) -> int:
    import json

    from berth.cli.commands.events import parse_filters
    from berth.cli.output import table
    from berth.cli.templates import render

    client = cli.client()
    params = {"term": opts.term, "limit": opts.limit}
    if opts.filter:
        params["filters"] = json.dumps(parse_filters(opts.filter))
    resp = client._get(client._url("/images/search"), params=params)
    results = client._result(resp, json=True)
    if opts.format:
        for r in results:
            row = {"Name": r["name"], "Description": r["description"], "StarCount": r["star_count"],
                   "IsOfficial": "[OK]" if r["is_official"] else "", "IsAutomated": "[OK]" if r["is_automated"] else ""}
            print(render(opts.format, row), file=cli.out)
        return 0
    table(cli.out, ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"],
          [[r["name"], r["description"] if opts.no_trunc or len(r["description"]) <= 45 else r["description"][:44] + "…",
            str(r["star_count"]), "[OK]" if r["is_official"] else ""] for r in results])
    return 0
