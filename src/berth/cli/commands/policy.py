"""berth policy check | explain: validate an authorization policy, and see which rule decides a request."""

from __future__ import annotations

import argparse
import json
import sys

from berth.cli.main import CLI
from berth.errors import InvalidParameter
from berth.security import policy


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    c = sub.add_parser("check", help="Validate a policy file against berth's actions and attributes")
    c.add_argument("file", metavar="FILE")
    e = sub.add_parser("explain", help="Say which rule decides a request (asks the daemon; the body is read "
                                       "from standard input when it is not a terminal)")
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="user", metavar="USER", help="a unix user (name or uid) on the daemon's host")
    who.add_argument("--cn", help="a TLS client certificate's common name")
    who.add_argument("--anonymous", action="store_true", help="a caller without identity (plain TCP)")
    e.add_argument("--org", default="", help="the certificate's organization (O), with --cn")
    e.add_argument("--ou", default="", help="the certificate's organizational unit (OU), with --cn")
    e.add_argument("--listener", default="", help="the listener the request comes through (its role counts)")
    e.add_argument("--policy", metavar="FILE", help="decide with this policy file instead of the daemon's")
    e.add_argument("--format", choices=["text", "json"], default="text")
    e.add_argument("method", metavar="METHOD")
    e.add_argument("path", metavar="PATH")


def run(cli: CLI, opts: argparse.Namespace) -> int:
    if opts.sub == "check":
        pol = policy.check_file(opts.file)
        roles = sorted(pol.roles())
        print(f"{opts.file}: {len(pol.rules)} rules, valid" + (f"; roles: {', '.join(roles)}" if roles else ""),
              file=cli.out)
        return 0
    spec: dict[str, object] = {"Method": opts.method.upper(), "Path": opts.path, "Listener": opts.listener}
    if opts.user:
        spec["User"] = opts.user
    elif opts.cn:
        spec.update(CN=opts.cn, O=opts.org, OU=opts.ou)
    if opts.policy:
        with open(opts.policy, encoding="utf-8") as f:
            spec["Policy"] = f.read(1 << 20)
    if not sys.stdin.isatty():
        raw = sys.stdin.buffer.read(4 << 20)
        if raw.strip():
            try:
                spec["Body"] = json.loads(raw)
            except ValueError as exc:
                raise InvalidParameter(f"the request body on standard input is not JSON: {exc}") from None
    c = cli.client()
    res = c._result(c._post_json(c._url("/berth/policy/explain"), data=spec), True)
    if opts.format == "json":
        print(json.dumps(res, indent=2), file=cli.out)
        return 0 if res["Allowed"] else 1
    verdict = "ALLOW" if res["Allowed"] else "DENY"
    print(f"{verdict}  {res['Action']} by {res['Principal']}"
          + (f" on {res['Resource']}" if res.get("Resource") else ""), file=cli.out)
    if res.get("Role"):
        print(f"  listener role: {res['Role']}", file=cli.out)
    if res.get("Groups"):
        print(f"  unix groups: {', '.join(res['Groups'])}", file=cli.out)
    if res["Rules"]:
        print(f"  decided by: {', '.join(res['Rules'])}", file=cli.out)
    else:
        print("  decided by: no rule matched (nothing is permitted unless a rule permits it)", file=cli.out)
    if not res["Allowed"]:
        print(f"  message: {res['Message']}", file=cli.out)
    if res.get("ForcedLabels"):
        print("  labels forced on it: " + ", ".join(f"{k}={v}" for k, v in res["ForcedLabels"].items()), file=cli.out)
    ctx = res.get("Context") or {}
    asked = {k: v for k, v in ctx.items() if v not in (False, "", [], None) and k not in ("method", "path")}
    if asked:
        print("  context: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in asked.items()), file=cli.out)
    for err in res.get("Errors") or []:
        print(f"  error (rule skipped): {err}", file=cli.out)
    return 0 if res["Allowed"] else 1
