"""berth image ls|inspect|history|tag|rm|prune|load|save|import, and the top-level aliases
(images, inspect-like, history, tag, rmi, load, save, import)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import docker.errors

from berth.cli.commands.events import parse_filters
from berth.cli.main import CLI
from berth.cli.output import human_size, since, table
from berth.cli.templates import render
from berth.errors import InvalidParameter

VERBS = ("ls", "inspect", "history", "tag", "rm", "prune", "load", "save", "import")
ALIASES = {"images": "ls", "rmi": "rm", "history": "history", "tag": "tag", "load": "load", "save": "save",
           "import": "import"}


def add_verb_arguments(verb: str, p: argparse.ArgumentParser) -> None:
    if verb == "ls":
        p.add_argument("repository", nargs="?")
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--digests", action="store_true")
        p.add_argument("--no-trunc", action="store_true")
        p.add_argument("-f", "--filter", action="append", default=[])
        p.add_argument("--format")
    elif verb == "inspect":
        p.add_argument("images", nargs="+")
        p.add_argument("-f", "--format")
    elif verb == "history":
        p.add_argument("image")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--no-trunc", action="store_true")
        p.add_argument("-H", "--human", default="true")
        p.add_argument("--format")
    elif verb == "tag":
        p.add_argument("source")
        p.add_argument("target")
    elif verb == "rm":
        p.add_argument("images", nargs="+")
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("--no-prune", action="store_true")
    elif verb == "prune":
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("--filter", action="append", default=[])
    elif verb == "load":
        p.add_argument("-i", "--input")
        p.add_argument("-q", "--quiet", action="store_true")
    elif verb == "save":
        p.add_argument("images", nargs="+")
        p.add_argument("-o", "--output")
    elif verb == "import":
        p.add_argument("file")
        p.add_argument("reference", nargs="?")
        p.add_argument("-c", "--change", action="append", default=[])
        p.add_argument("-m", "--message", default="")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERBS:
        add_verb_arguments(verb, sub.add_parser(verb, aliases=["list"] if verb == "ls" else
                                               (["remove"] if verb == "rm" else [])))


def _short(image_id: str, no_trunc: bool = False) -> str:
    return image_id if no_trunc else image_id.split(":", 1)[-1][:12]


def ls(cli: CLI, o: argparse.Namespace) -> int:
    filters = parse_filters(o.filter)
    if o.repository:
        filters.setdefault("reference", []).append(o.repository)
    images = cli.client().images(all=o.all, filters=filters or None)
    rows: list[dict[str, Any]] = []
    for img in sorted(images, key=lambda i: -i["Created"]):
        tags = img.get("RepoTags") or ["<none>:<none>"]
        digests = img.get("RepoDigests") or []
        for t in tags:
            repo, _, tag = t.rpartition(":")
            digest = next((d.split("@", 1)[1] for d in digests if d.split("@", 1)[0] == repo), "<none>")
            rows.append({"Repository": repo, "Tag": tag, "ID": _short(img["Id"], o.no_trunc), "Digest": digest,
                         "CreatedSince": since(img["Created"]),
                         "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(img["Created"])),
                         "Size": human_size(img["Size"])})
    if o.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        print("\n".join(seen), file=cli.out) if seen else None
        return 0
    if o.format:
        for r in rows:
            print(json.dumps(r) if o.format == "json" else render(o.format, r), file=cli.out)
        return 0
    header = ["REPOSITORY", "TAG", *(["DIGEST"] if o.digests else []), "IMAGE ID", "CREATED", "SIZE"]
    table(cli.out, header, [[r["Repository"], r["Tag"], *([r["Digest"]] if o.digests else []), r["ID"],
                             r["CreatedSince"], r["Size"]] for r in rows])
    return 0


def inspect(cli: CLI, o: argparse.Namespace) -> int:
    out, failed = [], False
    for name in o.images:
        try:
            out.append(cli.client().inspect_image(name))
        except docker.errors.NotFound:
            print(f"Error: No such image: {name}", file=cli.err)
            failed = True
    if o.format:
        for item in out:
            print(render(o.format, item) if o.format != "json" else json.dumps(item), file=cli.out)
    else:
        print(json.dumps(out, indent=4), file=cli.out)
    return 1 if failed else 0


def history(cli: CLI, o: argparse.Namespace) -> int:
    rows = []
    for h in cli.client().history(o.image):
        hid = h["Id"] if h["Id"] == "<missing>" else _short(h["Id"], o.no_trunc)
        created_by = h.get("CreatedBy", "")
        if not o.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({"ID": hid, "CreatedSince": since(h["Created"]), "CreatedBy": created_by,
                     "Size": human_size(h["Size"]), "Comment": h.get("Comment", "")})
    if o.quiet:
        print("\n".join(r["ID"] for r in rows), file=cli.out)
    elif o.format:
        for r in rows:
            print(render(o.format, r), file=cli.out)
    else:
        table(cli.out, ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
              [[r["ID"], r["CreatedSince"], r["CreatedBy"], r["Size"], r["Comment"]] for r in rows])
    return 0


def tag(cli: CLI, o: argparse.Namespace) -> int:
    repo, tag_ = o.target, None
    if ":" in o.target.rsplit("/", 1)[-1]:
        repo, tag_ = o.target.rsplit(":", 1)
    cli.client().tag(o.source, repo, tag_)
    return 0


def rm(cli: CLI, o: argparse.Namespace) -> int:
    failed = False
    for name in o.images:
        try:
            for item in cli.client().remove_image(name, force=o.force, noprune=o.no_prune) or []:
                for k, v in item.items():
                    print(f"{k}: {v}", file=cli.out)
        except docker.errors.APIError as exc:
            print(f"Error response from daemon: {exc.explanation}", file=cli.err)
            failed = True
    return 1 if failed else 0


def prune(cli: CLI, o: argparse.Namespace) -> int:
    filters = parse_filters(o.filter)
    filters["dangling"] = ["false" if o.all else "true"]
    if not o.force:
        what = "all images without at least one container associated to them" if o.all else "all dangling images"
        print(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ", end="",
              file=cli.out, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    result = cli.client().prune_images(filters=filters)
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:", file=cli.out)
        for item in deleted:
            for k, v in item.items():
                print(f"{k.lower()}: {v}", file=cli.out)
        print(file=cli.out)
    print(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}", file=cli.out)
    return 0


def load(cli: CLI, o: argparse.Namespace) -> int:
    from berth.cli.progress import show_stream

    src = open(o.input, "rb") if o.input else sys.stdin.buffer
    if not o.input and sys.stdin.isatty():
        raise InvalidParameter("requested load from stdin, but stdin is empty (use -i FILE or redirect)")
    quiet = o.quiet or not cli.out.isatty()
    with src:
        client = cli.client()
        resp = client._post(client._url("/images/load"), data=iter(lambda: src.read(1 << 20), b""),
                            params={"quiet": "1" if quiet else "0"}, stream=True)
        client._raise_for_status(resp)
        return show_stream(cli, (json.loads(line) for line in resp.iter_lines() if line.strip()))


def save(cli: CLI, o: argparse.Namespace) -> int:
    if not o.output and cli.out.isatty():
        raise InvalidParameter("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    client = cli.client()
    resp = client._get(client._url("/images/get"), params={"names": o.images}, stream=True)
    client._raise_for_status(resp)
    out = open(o.output + ".berth-partial", "wb") if o.output else sys.stdout.buffer
    try:
        for chunk in resp.iter_content(1 << 20):
            out.write(chunk)
    except BaseException:
        if o.output:
            out.close()
            import os

            os.unlink(o.output + ".berth-partial")
        raise
    if o.output:
        out.close()
        import os

        os.replace(o.output + ".berth-partial", o.output)
    return 0


def import_(cli: CLI, o: argparse.Namespace) -> int:
    params: dict[str, Any] = {"fromSrc": "-", "message": o.message, "changes": o.change}
    if o.reference:
        repo, tag_ = o.reference, ""
        if ":" in o.reference.rsplit("/", 1)[-1]:
            repo, tag_ = o.reference.rsplit(":", 1)
        params.update(repo=repo, tag=tag_)
    src = sys.stdin.buffer if o.file == "-" else open(o.file, "rb")
    client = cli.client()
    with src:
        resp = client._post(client._url("/images/create"), data=iter(lambda: src.read(1 << 20), b""),
                            params=params)
    client._raise_for_status(resp)
    for line in resp.text.splitlines():
        if line.strip():
            print(json.loads(line).get("status", ""), file=cli.out)
    return 0


HANDLERS = {"ls": ls, "list": ls, "inspect": inspect, "history": history, "tag": tag, "rm": rm, "remove": rm,
            "prune": prune, "load": load, "save": save, "import": import_}


def run(cli: CLI, opts: argparse.Namespace) -> int:
    return HANDLERS[opts.verb](cli, opts)
