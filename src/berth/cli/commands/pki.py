"""berth pki init | server | client | revoke | env: the certificates for berthd's mutual TLS."""

from __future__ import annotations

import argparse
import os

from berth.cli.main import CLI
from berth.security import pki

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".berth", "pki")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=int, default=730, help="validity in days (default 730)")
    p.add_argument("--rsa", type=int, metavar="BITS", help="make an RSA key of BITS bits instead of ECDSA P-256")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    i = sub.add_parser("init", help="Create a CA (ca.pem, ca-key.pem)")
    i.add_argument("--dir", default=DEFAULT_DIR, help=f"where the CA lives (default {DEFAULT_DIR})")
    i.add_argument("--cn", default="berth CA", help="the CA's common name")
    _common(i)
    for kind, eku in (("server", "serverAuth"), ("client", "clientAuth")):
        s = sub.add_parser(kind, help=f"Issue a {kind} certificate ({eku}) as cert.pem, key.pem and ca.pem")
        s.add_argument("--dir", default=DEFAULT_DIR, help="the CA's directory")
        s.add_argument("--cn", required=True, help="common name (the host name, or the client's identity)")
        s.add_argument("--out", required=True, help="directory for ca.pem, cert.pem and key.pem")
        s.add_argument("--org", help="organization (O), e.g. a team: TlsOrg::\"O\" in authorization policies")
        s.add_argument("--ou", help="organizational unit (OU): TlsUnit::\"OU\" in authorization policies")
        if kind == "server":
            s.add_argument("--san", action="append", default=[], help="DNS:name or IP:address (repeatable)")
        _common(s)
    r = sub.add_parser("revoke", help="Revoke certificates: add them to the CA's CRL (crl.pem, for --tlscrl)")
    r.add_argument("--dir", default=DEFAULT_DIR, help="the CA's directory")
    r.add_argument("--crl-days", type=int, default=30, help="the CRL's validity in days (default 30)")
    r.add_argument("what", nargs="+", metavar="CERT|SERIAL", help="a certificate file or a serial number in hex")
    e = sub.add_parser("env", help="Print the shell exports that point docker and berth at a TLS daemon")
    e.add_argument("--host", required=True, help="tcp://HOST:2376")
    e.add_argument("--cert-path", required=True, help="directory with ca.pem, cert.pem and key.pem")
    e.add_argument("--shell", default="bash", choices=["bash", "sh", "zsh", "fish", "powershell"])


def run(cli: CLI, opts: argparse.Namespace) -> int:
    if opts.sub == "env":
        for line in pki.env_lines(opts.host, opts.cert_path, opts.shell):
            print(line, file=cli.out)
        return 0
    if opts.sub == "revoke":
        serials = [pki.serial_of(w) for w in opts.what]
        path = pki.revoke(pki.CA.load(opts.dir), opts.dir, serials, opts.crl_days)
        print(f"revoked {', '.join(f'{s:x}' for s in serials)}: {path} (give it to berthd with --tlscrl; "
              "SIGHUP makes a running berthd read it again)", file=cli.out)
        return 0
    spec = pki.KeySpec(opts.rsa)
    if opts.sub == "init":
        pki.init_ca(opts.dir, opts.cn, opts.days, spec, opts.force)
        print(f"CA created: {os.path.join(opts.dir, 'ca.pem')} (key {os.path.join(opts.dir, 'ca-key.pem')}, mode 0400)",
              file=cli.out)
        return 0
    ca = pki.CA.load(opts.dir)
    cert = pki.issue(ca, opts.out, opts.cn, server=opts.sub == "server", sans=getattr(opts, "san", []),
                     days=opts.days, key_spec=spec, org=opts.org, force=opts.force, unit=opts.ou)
    print(f"{opts.sub} certificate for {opts.cn} (serial {cert.serial_number:x}) written to {opts.out}: "
          "ca.pem, cert.pem, key.pem", file=cli.out)
    return 0
