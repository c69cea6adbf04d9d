"""docker exec: ``<runtime> exec --process FILE`` run by berthd, its stdio joined to the client; with
a TTY, through a pty from the container's own devpts (crun's console socket) or the host's.

Exec processes are berthd's children: unlike the container itself they end with berthd (dockerd's
attached exec sessions break with it too)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from berth.container import security as csecurity
from berth.container import users
from berth.container.model import Container
from berth.container.registry import Registry
from berth.container.runtime import OCIRuntime, receive_console
from berth.errors import BerthError, Conflict, InvalidParameter, NotFound
from berth.linux import safepath


class _ExecFailed(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text



@dataclass
class Exec:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    workdir: str
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    tty: bool = False
    detach_keys: bytes = b""  # empty: the default (ctrl-p ctrl-q)
    privileged: bool = False
    running: bool = False
    exit_code: int | None = None
    pid: int = 0

    def view(self) -> dict[str, Any]:
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code, "ProcessConfig": {
            "tty": self.tty, "entrypoint": self.cmd[0] if self.cmd else "", "arguments": self.cmd[1:],
            "privileged": self.privileged, "user": self.user}, "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr, "OpenStdout": self.attach_stdout, "CanRemove": False,
            "ContainerID": self.container_id, "DetachKeys": base64.b64encode(self.detach_keys).decode(),
            "Pid": self.pid}


class ExecService:
    """The exec instances of this daemon's life, in the api's ExecBackend shape."""

    def __init__(self, registry: Registry, runtimes: dict[str, OCIRuntime],
                 parse_detach_keys: Callable[[str], bytes]) -> None:
        """``parse_detach_keys``: the api's parser of a DetachKeys value (ValueError when invalid)."""
        self.registry = registry
        self.runtimes = runtimes
        self.parse_detach_keys = parse_detach_keys
        self.execs: dict[str, Exec] = {}
        self._ptys: dict[str, int] = {}  # exec ID → pty master, while a TTY exec runs

    def container_of(self, exec_id: str) -> tuple[str, dict[str, str]] | None:
        """(ID, labels) of the container an exec runs in (for authorization)."""
        ex = self.execs.get(exec_id)
        ctr = None if ex is None else self.registry.find(ex.container_id)
        return None if ctr is None else (ctr.id, ctr.labels)

    def exec_create(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ctr = self.registry.get(name)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        cmd = body.get("Cmd")
        if not cmd or not isinstance(cmd, list):
            raise InvalidParameter("No exec command specified")
        ex = Exec(secrets.token_hex(32), ctr.id, [str(c) for c in cmd], list(body.get("Env") or []),
                  body.get("User") or ctr.config.get("User") or "", body.get("WorkingDir") or "",
                  bool(body.get("AttachStdin")), bool(body.get("AttachStdout")), bool(body.get("AttachStderr")),
                  tty=bool(body.get("Tty")), privileged=bool(body.get("Privileged")))
        # Go's JSON decoding matches field names whatever their case: docker-py sends "detachKeys"
        keys = next((v for k, v in body.items() if k.lower() == "detachkeys" and v), "")
        if keys:
            try:
                ex.detach_keys = self.parse_detach_keys(str(keys))
            except ValueError:
                raise InvalidParameter(f"Invalid escape keys ({keys}) provided") from None
        self.execs[ex.id] = ex
        self.registry.event("exec_create", ctr, execID=ex.id)
        return {"Id": ex.id}

    async def _open_tty(self, ex: Exec, ctr: Container, process_file: str) -> tuple[asyncio.subprocess.Process, int]:
        """Start a TTY exec: (the runtime's process, the pty master). With crun the pty comes from the
        container's own devpts through a console socket (``tty`` inside names it); otherwise berthd
        opens one on the host's devpts and gives the slave side to the runtime as stdio."""
        import pty
        import tempfile

        runtime = self.runtimes[ctr.runtime]
        if not runtime.console_exec:  # the process file says terminal=false: the pty is ours
            master, slave = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(*runtime.exec_argv(ctr.id, process_file), stdin=slave,
                                                            stdout=slave, stderr=slave, start_new_session=True)
            finally:
                os.close(slave)
            return proc, master
        console_dir = tempfile.mkdtemp(prefix="berth-tty-")  # a unix socket path must stay under 108 bytes
        console = os.path.join(console_dir, "console.sock")
        argv = runtime.exec_tty_argv(ctr.id, process_file, console)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(console)
            listener.listen(1)
            listener.settimeout(30)
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            receiving = asyncio.ensure_future(asyncio.to_thread(receive_console, listener))
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait([receiving, exited], return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                # The runtime may have exited (the command could not run) after sending the terminal,
                # whose reception has not been scheduled yet: its error is on that terminal.
                await asyncio.wait([receiving], timeout=2)
            if not receiving.done():  # the runtime failed before it made the terminal
                listener.close()
                with contextlib.suppress(BaseException):
                    await receiving
                assert proc.stdout is not None
                text = (await proc.stdout.read()).decode(errors="replace").strip()
                raise _ExecFailed(await exited, text)
            exited.cancel()
            return proc, receiving.result()
        finally:
            listener.close()
            shutil.rmtree(console_dir, ignore_errors=True)

    async def _run_tty(self, ex: Exec, ctr: Container, process_file: str, stdin: Any, write: Any) -> int:
        """A TTY exec: output is raw, from the pty master."""
        import fcntl

        try:
            proc, master = await self._open_tty(ex, ctr, process_file)
        except BaseException as exc:
            if not isinstance(exc, _ExecFailed):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(process_file)
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(process_file)
            # dockerd answers 126 for an exec whose command cannot run, not found included (unlike run)
            code = 126 if "not found" in exc.text or "ermission denied" in exc.text else exc.code
            if ex.attach_stdout:
                await write(1, (f"OCI runtime exec failed: {exc.text}\r\n").encode())
            ex.exit_code = code
            self.registry.event("exec_die", ctr, execID=ex.id, exitCode=str(code))
            return code
        fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._ptys[ex.id] = master
        ex.running, ex.pid = True, proc.pid or 0
        self.registry.event("exec_start", ctr, execID=ex.id)
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(master, readable.set)

        async def pump_in() -> None:
            try:
                while data := await stdin.read(65536):
                    await loop.run_in_executor(None, os.write, master, data)
            except (OSError, ConnectionResetError):
                pass

        feeder = asyncio.ensure_future(pump_in()) if stdin is not None and ex.attach_stdin else None
        exited = asyncio.ensure_future(proc.wait())
        tail = bytearray()
        try:
            while True:
                waiter = asyncio.ensure_future(readable.wait())
                await asyncio.wait([waiter, exited], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                readable.clear()
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    if exited.done():
                        break  # the process is gone and nothing is left to read
                    continue
                except OSError:  # EIO: the last process holding the slave side exited
                    break
                if not data:
                    break
                tail.extend(data)
                del tail[:-512]
                if ex.attach_stdout:
                    await write(1, data)
            code = await exited
            if code == 255 and (b"not found in $PATH" in tail or b"ermission denied" in tail):
                code = 126  # the runtime could not run the command: dockerd's exec code, as without a TTY
        finally:
            loop.remove_reader(master)
            if feeder is not None:
                feeder.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            self._ptys.pop(ex.id, None)
            os.close(master)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(process_file)
        ex.running, ex.exit_code = False, code
        self.registry.event("exec_die", ctr, execID=ex.id, exitCode=str(code))
        return code

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        import fcntl
        import struct
        import termios

        if exec_id not in self.execs:
            raise NotFound(f"No such exec instance: {exec_id}")
        master = self._ptys.get(exec_id)
        if master is not None:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex.view()

    def _process_file(self, ex: Exec, ctr: Container) -> str:
        p = self.registry.layout.paths(ctr.id)
        with open(os.path.join(p.bundle, "config.json")) as f:
            process = json.load(f)["process"]
        env = {e.split("=", 1)[0]: e for e in process.get("env", [])}
        for e in ex.env:
            env[e.split("=", 1)[0]] = e
        with safepath.Root.at(os.path.join(p.bundle, "rootfs")) as root:
            u = users.resolve_user(root, ex.user, tuple(ctr.host_config.get("GroupAdd") or ()))
        if not any(e.startswith("HOME=") for e in [*(ctr.config.get("Env") or []), *ex.env]):
            env["HOME"] = f"HOME={u.home}"  # the exec's user's (the runtime would read passwd for it)
        terminal = ex.tty and self.runtimes[ctr.runtime].console_exec
        process.update(args=ex.cmd, env=list(env.values()), terminal=terminal,
                       user={"uid": u.uid, "gid": u.gid, "additionalGids": list(u.additional_gids)})
        if ex.privileged:  # as dockerd: every capability; the container's seccomp profile still applies
            caps = csecurity.bounding_caps()
            process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        if ex.workdir:
            process["cwd"] = ex.workdir
        path = os.path.join(p.run_dir, f"exec-{ex.id}.json")
        with open(path, "w") as f:
            json.dump(process, f)
        return path

    async def exec_run(self, exec_id: str, stdin: Any, write: Any) -> int:
        """Run the exec; ``stdin`` has ``async read(n)`` (or is None), ``write(stream, data)`` sends output.
        Returns the exit code."""
        ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        if ex.running or ex.exit_code is not None:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        ctr = self.registry.get(ex.container_id)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        runtime = self.runtimes[ctr.runtime]
        try:
            process_file = await asyncio.to_thread(self._process_file, ex, ctr)
        except BerthError as exc:
            # as dockerd: the error goes to the client's stdout and the exec ends with 126
            ex.exit_code = 126
            self.registry.event("exec_die", ctr, execID=ex.id, exitCode="126")
            if ex.attach_stdout:
                with contextlib.suppress(ConnectionResetError):
                    await write(1, f"OCI runtime exec failed: {exc.message}\r\n".encode())
            return 126
        if ex.tty:
            return await self._run_tty(ex, ctr, process_file, stdin, write)
        proc = await asyncio.create_subprocess_exec(
            *runtime.exec_argv(ctr.id, process_file),
            stdin=asyncio.subprocess.PIPE if ex.attach_stdin and stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        ex.running, ex.pid = True, proc.pid or 0
        self.registry.event("exec_start", ctr, execID=ex.id)

        err_tail = bytearray()

        async def pump_out(reader: asyncio.StreamReader, stream: int, wanted: bool) -> None:
            while data := await reader.read(65536):
                if stream == 2:
                    err_tail.extend(data)
                    del err_tail[:-512]
                if wanted:
                    await write(stream, data)

        async def pump_in() -> None:
            assert proc.stdin is not None
            try:
                while data := await stdin.read(65536):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except (ConnectionResetError, BrokenPipeError):
                pass
            finally:
                proc.stdin.close()

        feeder = asyncio.ensure_future(pump_in()) if proc.stdin is not None else None
        try:
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.gather(pump_out(proc.stdout, 1, ex.attach_stdout), pump_out(proc.stderr, 2, ex.attach_stderr))
            code = await proc.wait()
            if code == 255 and (b"not found in $PATH" in err_tail or b"ermission denied" in err_tail):
                code = 126  # dockerd's exec code when the command cannot run (not found included)
        finally:
            if feeder is not None:
                feeder.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(process_file)
        ex.running, ex.exit_code = False, code
        self.registry.event("exec_die", ctr, execID=ex.id, exitCode=str(code))
        return code
