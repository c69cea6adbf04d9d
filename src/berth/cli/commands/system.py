"""berth system info | events | dial-stdio.

``dial-stdio`` joins this process's stdin and stdout to the daemon's socket: it is what ``ssh HOST
berth system dial-stdio`` runs on the remote end of an ``ssh://`` connection (the docker CLI runs
``docker system dial-stdio`` the same way). stdin's end becomes ``shutdown(SHUT_WR)`` on the socket,
so a half-close crosses the ssh hop; the daemon closing its side ends the process.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import threading

from berth.cli.main import CLI
from berth.errors import InvalidParameter


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="Display system-wide information")
    info.add_argument("-f", "--format")
    ev = sub.add_parser("events", help="Get real time events from the server")
    from berth.cli.commands import events

    events.add_arguments(ev)
    sub.add_parser("dial-stdio", help="Proxy the stdio stream to the daemon connection (for ssh://)")
    sub.add_parser("df", help="Show disk usage")


def _connect(cli: CLI) -> socket.socket:
    ep = cli.endpoint
    if ep.scheme == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(ep.host[len("unix://"):])
        return s
    if ep.scheme == "tcp":
        hostport = ep.host[len("tcp://"):]
        host, _, port = hostport.rpartition(":")
        raw = socket.create_connection((host.strip("[]"), int(port)))
        if ep.tls is None:
            return raw
        ctx = ssl.create_default_context(cafile=ep.tls.ca) if ep.tls.verify else ssl._create_unverified_context()
        if ep.tls.cert and ep.tls.key:
            ctx.load_cert_chain(ep.tls.cert, ep.tls.key)
        return ctx.wrap_socket(raw, server_hostname=host.strip("[]"))
    raise InvalidParameter(f"dial-stdio cannot reach {ep.host}: only unix:// and tcp:// daemons")


def dial_stdio(cli: CLI) -> int:
    sock = _connect(cli)
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()

    def upstream() -> None:  # stdin → daemon, then half-close
        try:
            while True:
                data = os.read(in_fd, 65536)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            pass
        try:
            if isinstance(sock, ssl.SSLSocket):
                return  # TLS cannot half-close and keep reading; the daemon ends the stream
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            view = memoryview(data)
            while view:
                n = os.write(out_fd, view)
                view = view[n:]
    except OSError:
        pass
    finally:
        sock.close()
        os.close(out_fd)
    return 0


def run(cli: CLI, opts: argparse.Namespace) -> int:
    if opts.sub == "dial-stdio":
        return dial_stdio(cli)
    if opts.sub == "df":
        from berth.cli.commands import extra

        return extra.df(cli, opts)
    if opts.sub == "info":
        from berth.cli.commands import info

        return info.run(cli, opts)
    from berth.cli.commands import events

    return events.run(cli, opts)
