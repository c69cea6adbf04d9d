"""berth.daemon.supervise with real processes: the child is a shell script that records its starts
and the signals it gets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.lib.wait import until


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_child_that_dies_is_started_again_hup_is_passed_on_and_term_stops_both(tmp_path: Path) -> None:
    record = tmp_path / "record"
    script = tmp_path / "child.sh"
    # the child: records "start PID", a SIGHUP as "hup", and exits on SIGTERM as "term"
    # its traps are set before it says it started: a SIGHUP sent after "start" always finds them
    script.write_text(f"#!/bin/sh\ntrap 'echo hup >> {record}' HUP\ntrap 'echo term >> {record}; exit 0' TERM\n"
                      f"echo start-$$ >> {record}\necho output of the child\nwhile :; do sleep 0.05; done\n")
    script.chmod(0o755)
    (tmp_path / "argv.json").write_text(json.dumps([str(script)]))
    pidfile, log = tmp_path / "sup.pid", tmp_path / "log" / "berthd.log"
    argv = [sys.executable, "-m", "berth.daemon.supervise", "--argv-file", str(tmp_path / "argv.json"),
            "--pidfile", str(pidfile), "--log", str(log)]
    sup = subprocess.Popen(argv)
    try:
        first = until(lambda: [x for x in _lines(record) if x.startswith("start-")], "the child started")[0]
        assert int(pidfile.read_text()) == sup.pid
        again = subprocess.run(argv, capture_output=True, text=True, timeout=10)  # one supervisor per pidfile
        assert again.returncode == 1 and "already running" in again.stderr
        os.kill(int(first.split("-")[1]), signal.SIGKILL)
        until(lambda: len([x for x in _lines(record) if x.startswith("start-")]) == 2, "the child started again")
        assert "exited with -9; starting it again in 1 s" in log.read_text()
        assert "output of the child" in log.read_text()
        # the child may write "start" before the supervisor's Popen has returned to it: a SIGHUP in that
        # moment finds no live child to pass on to (and the new berthd reads its configuration anyway),
        # so the SIGHUP is sent again until the child has one (its trap is set before "start")
        def hup_seen() -> bool:
            sup.send_signal(signal.SIGHUP)
            return "hup" in _lines(record)

        until(hup_seen, "the child got the SIGHUP", interval=0.2)
        # the SIGTERM goes through the supervisor's other thread (the one that copies the child's output):
        # the kernel hands a signal sent with a thread's ID to that thread when it can take it, and a
        # supervisor whose other thread took it went on waiting for its child forever
        others = [int(t) for t in os.listdir(f"/proc/{sup.pid}/task") if int(t) != sup.pid]
        assert others, "the supervisor has a thread for the child's output"
        os.kill(others[0], signal.SIGTERM)
        assert sup.wait(timeout=10) == 0
        assert _lines(record)[-1] == "term" and not pidfile.exists()
        assert "berthd stopped (exit code 0)" in log.read_text()
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        for line in _lines(record):
            if line.startswith("start-"):
                try:
                    os.kill(int(line.split("-")[1]), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_a_stale_pidfile_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "argv.json").write_text(json.dumps(["/bin/true"]))
    dead = subprocess.Popen(["/bin/true"])
    dead.wait()
    (tmp_path / "sup.pid").write_text(f"{dead.pid}\n")
    sup = subprocess.Popen([sys.executable, "-m", "berth.daemon.supervise", "--argv-file", str(tmp_path / "argv.json"),
                            "--pidfile", str(tmp_path / "sup.pid"), "--log", str(tmp_path / "log")])
    try:
        until(lambda: "starting it again" in (tmp_path / "log").read_text() if (tmp_path / "log").exists() else False,
              "the supervisor ran /bin/true and starts it again")
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=10) == 0
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
