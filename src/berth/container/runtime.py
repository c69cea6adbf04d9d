"""The OCI runtime boundary: crun (default) or runc, each container monitored by conmon.

conmon double-forks and stays with the container: it holds its stdio, writes its log (k8s-file
format) and, when the container exits, its exit code into ``<exit dir>/<id>``. berthd can die and
come back: containers keep running, nothing is lost.

``create`` starts conmon, which runs ``<runtime> create``; conmon reports the container's pid on the
sync pipe (``{"data": PID}``, or a negative value and a message), and only then may ``start`` be run
(starting earlier fails with "status: No such file"). Errors prefer the runtime's own JSON log
(``--log-format=json``), which says what went wrong in the runtime's words.
"""

from __future__ import annotations

import array
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

from berth.errors import Conflict, InvalidParameter, NotFound, System

CONMON = shutil.which("conmon") or "/usr/bin/conmon"


@dataclass(frozen=True, slots=True)
class Paths:
    """Where one container's runtime files live."""

    bundle: str  # config.json and rootfs (the overlay mount point)
    run_dir: str  # pidfile, conmon.pid, oci-log, attach sockets
    exit_dir: str  # conmon writes <exit_dir>/<id> with the exit code
    log_path: str  # the container's stdout/stderr, k8s-file format


class OCIRuntime:
    def __init__(self, name: str, path: str, root: str) -> None:
        self.name = name
        self.path = path
        self.root = root  # the runtime's own state (--root), under berthd's exec root
        os.makedirs(root, mode=0o700, exist_ok=True)

    def _run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.path, "--root", self.root, *args], capture_output=True, text=True,
                              timeout=timeout)

    def conmon_args(self, cid: str, name: str, p: Paths, tty: bool, stdin: bool, log_size_max: int = 0) -> list[str]:
        """conmon's whole command line, in one place."""
        args = [CONMON, "--api-version", "1", "-c", cid, "-u", cid, "-r", self.path, "-b", p.bundle,
                "-p", os.path.join(p.run_dir, "pidfile"), "-n", name, "--exit-dir", p.exit_dir,
                "--full-attach", "-l", f"k8s-file:{p.log_path}", "--log-level", "error",
                "--socket-dir-path", p.run_dir, "--conmon-pidfile", os.path.join(p.run_dir, "conmon.pid"),
                "--runtime-arg", "--root", "--runtime-arg", self.root,
                "--runtime-arg", "--log-format=json", "--runtime-arg", "--log",
                f"--runtime-arg={os.path.join(p.run_dir, 'oci-log')}"]
        if log_size_max:
            args += ["--log-size-max", str(log_size_max)]  # a hard cap; berthd rotates below it
        if tty:
            args.append("-t")
        if stdin:
            args.append("-i")  # conmon closes the container's stdin when the attach client half-closes
        return args

    def create(self, cid: str, name: str, p: Paths, tty: bool = False, stdin: bool = False,
               timeout: float = 30, log_size_max: int = 0) -> int:
        """Create the container (not started) under conmon; returns the container's pid."""
        os.makedirs(p.run_dir, mode=0o700, exist_ok=True)
        oci_log = os.path.join(p.run_dir, "oci-log")
        if os.path.exists(oci_log):
            os.unlink(oci_log)
        r_sync, w_sync = os.pipe()
        r_start, w_start = os.pipe()
        try:
            env = {"_OCI_SYNCPIPE": "3", "_OCI_STARTPIPE": "4", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

            def child_fds() -> None:
                os.dup2(w_sync, 3)
                os.dup2(r_start, 4)

            proc = subprocess.Popen(self.conmon_args(cid, name, p, tty, stdin, log_size_max), env=env,
                                    preexec_fn=child_fds,
                                    pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
            os.close(w_sync)
            w_sync = -1
            os.close(r_start)
            r_start = -1
            os.write(w_start, b"0")
            os.close(w_start)
            w_start = -1
            _, err = proc.communicate(timeout=timeout)  # conmon's parent exits once it has daemonized
            if proc.returncode != 0:
                raise System(f"conmon failed: {err.decode(errors='replace').strip()}")
            ready, _, _ = select.select([r_sync], [], [], timeout)
            if not ready:
                raise System(f"{self.name} create did not report within {timeout:.0f} s")
            raw = os.read(r_sync, 65536)
        finally:
            for fd in (r_sync, w_sync, r_start, w_start):
                if fd >= 0:
                    os.close(fd)
        try:
            msg = json.loads(raw.splitlines()[0]) if raw else {}
        except ValueError:
            msg = {}
        pid = int(msg.get("data", -1)) if isinstance(msg.get("data"), int) else -1
        if pid <= 0:
            raise self._error("create", msg.get("message") or raw.decode(errors="replace"), oci_log)
        return pid

    def _error(self, what: str, fallback: str, oci_log: str) -> Exception:
        text = fallback.strip()
        try:
            with open(oci_log) as f:
                lines = [json.loads(line) for line in f if line.strip()]
            errors = [e.get("msg", "") for e in lines if e.get("level") == "error"]
            if errors:
                text = errors[-1]
        except (OSError, ValueError):
            pass
        low = text.lower()
        m = re.search(r"executable file `([^`]*)` not found", text)
        if m:  # crun's words; the docker CLI maps runc's ("executable file not found") to exit code 127
            text = f'exec: "{m.group(1)}": executable file not found in $PATH'
            low = text.lower()
        if "executable file not found" in low or "permission denied" in low and "exec" in low:
            return InvalidParameter(f"failed to create task for container: {text}: unknown")
        return System(f"{self.name} {what} failed: {text}")

    def start(self, cid: str, p: Paths) -> None:
        r = self._run("start", cid)
        if r.returncode != 0:
            err = self._error("start", r.stderr, os.path.join(p.run_dir, "oci-log"))
            if "not running" in r.stderr and isinstance(err, System):
                # the first process ended between create and start: conmon's exit file says how
                code = None
                for _ in range(20):
                    if (code := read_exit_code(p.exit_dir, cid)) is not None:
                        break
                    time.sleep(0.05)
                how = ("no exit status recorded" if code is None else
                       f"killed by signal {code - 128}" if code > 128 else f"exit code {code}")
                err = System(f"{err.message} (its first process ended before it was started: {how})")
            raise err

    def kill(self, cid: str, sig: int) -> None:
        r = self._run("kill", cid, str(sig))
        if r.returncode != 0:
            if "not running" in r.stderr or "No such" in r.stderr or "does not exist" in r.stderr:
                raise Conflict(f"container {cid[:12]} is not running")
            raise System(f"{self.name} kill failed: {r.stderr.strip()}")

    def exec_argv(self, cid: str, process_file: str) -> list[str]:
        """The command that runs an extra process (docker exec) in a running container."""
        return [self.path, "--root", self.root, "exec", "--process", process_file, cid]

    @property
    def console_exec(self) -> bool:
        """Whether a TTY exec can get its pty from the runtime (``exec_tty_argv``): crun's stays in the
        foreground with a console socket; runc allows one only with --detach, which loses the exit code."""
        return self.name == "crun"

    def exec_tty_argv(self, cid: str, process_file: str, console_socket: str) -> list[str]:
        """A TTY exec whose pty the runtime opens in the container's own devpts and passes to
        ``console_socket``; the command stays in the foreground and exits with the process."""
        return [self.path, "--root", self.root, "exec", "--tty", "--console-socket", console_socket, "--process",
                process_file, cid]

    def update(self, cid: str, resources_file: str) -> None:
        r = self._run("update", "--resources", resources_file, cid)
        if r.returncode != 0:
            raise System(f"{self.name} update failed: {r.stderr.strip()}")

    def pause(self, cid: str) -> None:
        r = self._run("pause", cid)
        if r.returncode != 0:
            raise System(f"{self.name} pause failed: {r.stderr.strip()}")

    def resume(self, cid: str) -> None:
        r = self._run("resume", cid)
        if r.returncode != 0:
            raise System(f"{self.name} resume failed: {r.stderr.strip()}")

    def delete(self, cid: str, force: bool = True) -> None:
        r = self._run("delete", *(["--force"] if force else []), cid)
        if r.returncode != 0 and "does not exist" not in r.stderr and "No such" not in r.stderr:
            raise System(f"{self.name} delete failed: {r.stderr.strip()}")

    def state(self, cid: str) -> dict[str, object]:
        r = self._run("state", cid)
        if r.returncode != 0:
            raise NotFound(f"{self.name} has no container {cid[:12]}")
        return json.loads(r.stdout)  # type: ignore[no-any-return, unused-ignore]


def receive_console(listener: socket.socket) -> int:
    """Accept the runtime's connection on a console socket and return the pty master it sends."""
    conn, _ = listener.accept()
    with conn:
        fds = array.array("i")
        _, ancillary, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    if not fds:
        raise System("the runtime sent no terminal on the console socket")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def connect_attach(bundle: str) -> socket.socket:
    """conmon's attach socket (SOCK_SEQPACKET; what is sent goes to the container's stdin). The path
    can exceed the 108-byte limit of unix socket names, so it is reached through /proc/self/fd."""
    dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            s.connect(f"/proc/self/fd/{dfd}/attach")
        except OSError as exc:
            s.close()
            raise System(f"cannot attach to the container's stdin: {exc.strerror}") from None
        return s
    finally:
        os.close(dfd)


def read_exit_code(exit_dir: str, cid: str) -> int | None:
    try:
        with open(os.path.join(exit_dir, cid)) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as gone: conmon double-forks, so its parent is PID 1,
    which may take its time to reap it (measured here: 1.3 s), and kill(pid, 0) succeeds on zombies."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat_line[stat_line.rfind(b")") + 2: stat_line.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def wait_pid_gone(pid: int, timeout: float) -> bool:
    """Poll every millisecond: conmon normally goes within a few after its container (this is on the
    path of every `docker run`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.001)
    return False


SIGNALS = {name[3:]: int(getattr(signal, name)) for name in dir(signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(signal, name), int)}


def parse_signal(text: str | int) -> int:
    """"SIGKILL", "KILL", "9" → 9; InvalidParameter otherwise."""
    if isinstance(text, int):
        return text
    t = str(text).strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < 65:
            return n
    else:
        t = t[3:] if t.startswith("SIG") else t
        if t in SIGNALS:
            return SIGNALS[t]
    raise InvalidParameter(f"invalid signal: {text}")
