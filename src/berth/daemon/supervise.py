"""Keep berthd running on a host without systemd (``berth machine create`` starts it there):

    python -m berth.daemon.supervise --argv-file /etc/berth/berthd.argv.json \\
        --pidfile /run/berth-supervise.pid --log /var/log/berth/berthd.log

berthd's command line is the JSON list in ``--argv-file`` (read at each start, so a new one takes
effect at the next). An exit that was not asked for starts berthd again after a back-off (1 s,
doubling to 30 s, back to 1 s after a minute of running). SIGTERM and SIGINT stop berthd and then
the supervisor; SIGHUP is passed on (berthd reloads its configuration). berthd's output goes to
``--log``, which is rotated at 10 MiB (one old file kept).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

LOG_LIMIT = 10 << 20
MAX_BACKOFF = 30.0
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Supervisor:
    def __init__(self, argv_file: str, log: str) -> None:
        self.argv_file, self.log = argv_file, log
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        with open(self.argv_file) as f:
            argv = json.load(f)
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"{self.argv_file} must hold a JSON list of strings")
        return argv

    def signal(self, signum: int, frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    def _pump(self, child: subprocess.Popen[bytes]) -> None:
        """berthd's output to the log, rotated at LOG_LIMIT."""
        assert child.stdout is not None
        out = open(self.log, "ab")
        try:
            for line in iter(child.stdout.readline, b""):
                if out.tell() + len(line) > LOG_LIMIT:
                    out.close()
                    os.replace(self.log, self.log + ".1")
                    out = open(self.log, "ab")
                out.write(line)
                out.flush()
        finally:
            out.close()

    def note(self, text: str) -> None:
        with open(self.log, "ab") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervise: {text}\n".encode())

    def run(self) -> int:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                argv = self.argv()
            except (OSError, ValueError) as exc:
                self.note(f"cannot read berthd's command line: {exc}")
                return 1
            started = time.monotonic()
            self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, start_new_session=False)
            if self.stopping.is_set():  # a SIGTERM that came before the child was there to get it
                self.child.terminate()
            pump = threading.Thread(target=self._pump, args=(self.child,), daemon=True)
            # The pump starts with these signals blocked, so the kernel gives them to this thread: one
            # given to the pump would only set Python's flag, and this thread, in waitpid, would not
            # wake up to act on it (a SIGTERM then stopped nothing)
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
            try:
                pump.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            rc = self.child.wait()
            pump.join(timeout=5)
            if self.stopping.is_set():
                self.note(f"berthd stopped (exit code {rc})")
                return 0
            if time.monotonic() - started > 60:
                backoff = 1.0
            self.note(f"berthd exited with {rc}; starting it again in {backoff:.0f} s")
            if self.stopping.wait(backoff):
                return 0
            backoff = min(backoff * 2, MAX_BACKOFF)
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m berth.daemon.supervise")
    p.add_argument("--argv-file", required=True)
    p.add_argument("--pidfile", required=True)
    p.add_argument("--log", required=True)
    opts = p.parse_args(argv)
    os.makedirs(os.path.dirname(opts.log) or ".", exist_ok=True)
    try:
        fd = os.open(opts.pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            with open(opts.pidfile) as f:
                os.kill(int(f.read().strip() or 0), 0)
            print(f"already running (pid file {opts.pidfile})", file=sys.stderr)
            return 1
        except (ProcessLookupError, ValueError):
            os.unlink(opts.pidfile)
            fd = os.open(opts.pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    sup = Supervisor(opts.argv_file, opts.log)
    for sig in SIGNALS:
        signal.signal(sig, sup.signal)
    try:
        return sup.run()
    finally:
        try:
            os.unlink(opts.pidfile)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    sys.exit(main())
