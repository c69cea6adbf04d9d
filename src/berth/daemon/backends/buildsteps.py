"""What each Dockerfile instruction does to a build stage's state, as the classic builder does it:
metadata instructions change the run config and make an image with an empty layer; RUN runs a
container and commits its changes; COPY/ADD/WORKDIR change the files of a container that never
runs and commit them. The run (``buildrun.py``) owns the containers and images."""

from __future__ import annotations

import copy
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from berth.build import expand
from berth.build.parse import Instruction
from berth.errors import BerthError, InvalidParameter
from berth.units import go_duration, parse_go_duration

DEFAULT_SHELL = ["/bin/sh", "-c"]
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY",
              "no_proxy", "ALL_PROXY", "all_proxy")
EMPTY_CONFIG: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
    "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
    "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}


class BuildFailed(BerthError):
    """A step failed: reported in the stream, with the exit code when a RUN failed."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class StageState:
    """One stage's state between instructions."""
    image_id: str  # "" for scratch until the first commit
    base_config: dict[str, Any]  # the image config (history, rootfs, architecture …)
    run: dict[str, Any]  # the run config (the image config's "config")
    escape: str
    build_args: dict[str, str | None]  # given by the client (buildargs)
    declared: dict[str, str | None] = field(default_factory=dict)  # ARGs of this stage, in order
    maintainer: str = ""
    stage: int = 0  # which stage of the Dockerfile
    meta: dict[str, str] = field(default_factory=dict)  # the ARGs before the first FROM, with their values

    def _args(self) -> dict[str, str]:
        """The declared ARGs that have a value: the client's (buildargs), else the default."""
        values = {name: self.build_args.get(name) if name in self.build_args else default
                  for name, default in self.declared.items()}
        return {k: v for k, v in values.items() if v is not None}

    @property
    def env(self) -> dict[str, str]:
        """What substitution sees: the stage's ARGs (given values first), then ENV over them."""
        out = self._args()
        for e in self.run.get("Env") or []:
            k, _, v = e.partition("=")
            out[k] = v
        return out

    def arg_env(self) -> list[str]:
        """The ARG values a RUN sees and records (``|N k=v …``), those ENV does not override."""
        env_names = {e.partition("=")[0] for e in self.run.get("Env") or []}
        return [f"{k}={v}" for k, v in sorted(self._args().items()) if k not in env_names]

    def proxy_env(self) -> list[str]:
        """The predefined proxy ARGs given with --build-arg and not declared: a RUN sees them, the
        history and the cache key do not (as dockerd)."""
        return [f"{k}={v}" for k, v in sorted(self.build_args.items())
                if k in PROXY_ARGS and k not in self.declared and v is not None]

    def shell(self) -> list[str]:
        return list(self.run.get("Shell") or DEFAULT_SHELL)


def run_config(image_config: dict[str, Any], image_id: str) -> dict[str, Any]:
    """The run config a step goes on from: the image's own, every key there, its Image the image."""
    return {**copy.deepcopy(EMPTY_CONFIG), **copy.deepcopy(image_config.get("config") or {}), "Image": image_id}


def new_state(image_id: str, image_config: dict[str, Any] | None, escape: str,
              build_args: dict[str, str | None], stage: int = 0) -> StageState:
    cfg: dict[str, Any] = copy.deepcopy(image_config) if image_config else {
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    run = run_config(cfg, image_id)
    env = list(run.get("Env") or [])
    if not any(e.partition("=")[0] == "PATH" for e in env):  # as dockerd: every stage starts with a PATH
        env.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    run["Env"] = env
    return StageState(image_id, cfg, run, escape, build_args, stage=stage)


def _pairs(ins: Instruction, st: StageState) -> list[tuple[str, str]]:
    args = list(ins.args)
    if len(args) % 2:
        raise InvalidParameter(f"{ins.cmd} requires an even number of arguments (name value pairs)")
    if ins.flags.get("raw"):  # the request's labels: taken as they are, never substituted
        return [(args[i], args[i + 1]) for i in range(0, len(args), 2)]
    env = st.env
    return [(expand.word(args[i], env, st.escape), expand.word(args[i + 1], env, st.escape))
            for i in range(0, len(args), 2)]


def _json_or_shell(ins: Instruction, st: StageState) -> list[str]:
    if ins.json:
        return list(ins.args)
    text = " ".join(ins.args)
    return [*st.shell(), text] if text else []


def metadata(ins: Instruction, st: StageState) -> tuple[str, bool]:
    """Apply a metadata instruction to ``st``; (its history comment, whether it is the one-string
    form the classic builder uses for WORKDIR/COPY/ADD)."""
    run = st.run
    cmd = ins.cmd
    env = st.env
    if cmd == "ENV":
        pairs = _pairs(ins, st)
        values = list(run.get("Env") or [])
        for k, v in pairs:
            if not k:
                raise InvalidParameter("ENV names can not be blank")
            names = [e.partition("=")[0] for e in values]
            if k in names:  # replaced where it is, as dockerd
                values[names.index(k)] = f"{k}={v}"
            else:
                values.append(f"{k}={v}")
        run["Env"] = values
        return "ENV " + " ".join(f"{k}={v}" for k, v in pairs), False
    if cmd == "LABEL":
        pairs = _pairs(ins, st)
        labels = dict(run.get("Labels") or {})
        for k, v in pairs:
            if not k:
                raise InvalidParameter("LABEL names can not be blank")
            labels[k] = v
        run["Labels"] = labels
        return "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), False
    if cmd == "MAINTAINER":
        st.maintainer = " ".join(ins.args)
        return "MAINTAINER " + st.maintainer, False
    if cmd == "EXPOSE":
        ports = dict(run.get("ExposedPorts") or {})
        shown = []
        for raw in ins.args:
            for p in expand.words(raw, env, st.escape):
                port, _, proto = p.partition("/")
                lo, _, hi = port.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("", "tcp", "udp", "sctp") \
                        or len(lo) > 5 or len(hi) > 5 or int(lo) > 65535 or int(hi or lo) > 65535:
                    raise InvalidParameter(f"Invalid containerPort: {p}")
                if int(hi or lo) < int(lo):
                    raise InvalidParameter(f"Invalid range specified for the Port: {p}")
                for n in range(int(lo), int(hi or lo) + 1):
                    ports[f"{n}/{proto or 'tcp'}"] = {}
                shown.append(p)
        run["ExposedPorts"] = ports
        return "EXPOSE " + " ".join(sorted(shown)), False
    if cmd == "VOLUME":
        vols = dict(run.get("Volumes") or {})
        names = list(ins.args) if ins.json else [w for a in ins.args for w in expand.words(a, env, st.escape)]
        for v in names:
            v = expand.word(v, env, st.escape) if ins.json else v
            if not v.strip():
                raise InvalidParameter("VOLUME specified can not be an empty string")
            vols[v] = {}
        run["Volumes"] = vols
        return f"VOLUME [{' '.join(names)}]", False
    if cmd == "USER":
        run["User"] = expand.word(ins.args[0] if ins.args else "", env, st.escape)
        return "USER " + run["User"], False
    if cmd == "WORKDIR":
        import posixpath

        wd = expand.word(ins.args[0] if ins.args else "", env, st.escape)
        if not wd:
            raise InvalidParameter("WORKDIR requires exactly one argument")
        run["WorkingDir"] = posixpath.normpath(posixpath.join("/", run.get("WorkingDir") or "/", wd))
        return "WORKDIR " + run["WorkingDir"], True
    if cmd == "CMD":
        run["Cmd"] = _json_or_shell(ins, st)
        return "CMD " + json.dumps(run["Cmd"], ensure_ascii=False), False
    if cmd == "ENTRYPOINT":
        run["Entrypoint"] = _json_or_shell(ins, st) or None
        if not ins.json or not ins.args:
            run["Cmd"] = None  # a shell-form ENTRYPOINT drops the CMD, as Docker does
        return "ENTRYPOINT " + json.dumps(run["Entrypoint"] or [], ensure_ascii=False), False
    if cmd == "STOPSIGNAL":
        run["StopSignal"] = expand.word(ins.args[0] if ins.args else "", env, st.escape)
        return "STOPSIGNAL " + run["StopSignal"], False
    if cmd == "SHELL":
        if not ins.json:
            raise InvalidParameter("SHELL requires the arguments to be in JSON form")
        run["Shell"] = list(ins.args)
        return "SHELL [" + " ".join(ins.args) + "]", False
    if cmd == "ONBUILD":
        assert ins.sub is not None
        run["OnBuild"] = [*(run.get("OnBuild") or []), ins.sub.original]
        return "ONBUILD " + ins.sub.original, False
    if cmd == "HEALTHCHECK":
        return _healthcheck(ins, st), False
    if cmd == "ARG":
        shown = []
        for raw in ins.args:
            name, eq, default = raw.partition("=")
            value = expand.word(default, env, st.escape) if eq else st.meta.get(name)  # a meta ARG's value
            st.declared.pop(name, None)
            st.declared[name] = value
            shown.append(f"{name}={value}" if eq else name)
        return "ARG " + " ".join(shown), False
    raise InvalidParameter(f"{cmd} is not a metadata instruction")  # pragma: no cover


MAX_RUN_CONFIG = 1 << 20


def check_size(st: StageState) -> None:
    """The run config stays within a bound (ENV and LABEL values may each grow to 1 MiB)."""
    if len(json.dumps(st.run)) > MAX_RUN_CONFIG:
        raise InvalidParameter(f"the image's config would be larger than {MAX_RUN_CONFIG >> 20} MiB")


def _duration(text: str, what: str) -> int:
    try:
        return parse_go_duration(text)
    except ValueError:
        raise InvalidParameter(f"time: invalid duration \"{text}\" for --{what}") from None


def _go_rune(n: int) -> str:
    """Go's %q of an int (a rune literal), as dockerd's history shows Retries."""
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\"}
    if n in named:
        return f"'{named[n]}'"
    if 0x20 <= n < 0x7F:
        return f"'{chr(n)}'"
    return f"'\\x{n:02x}'" if n < 0x100 else f"'\\u{n:04x}'"


def _healthcheck(ins: Instruction, st: StageState) -> str:
    args = list(ins.args)
    if not args:
        raise InvalidParameter("HEALTHCHECK requires an argument")
    kind = args[0].upper()
    hc: dict[str, Any]
    if kind == "NONE":
        if len(args) > 1 or ins.flags:
            raise InvalidParameter("HEALTHCHECK NONE takes no arguments")
        hc = {"Test": ["NONE"]}
    elif kind != "CMD":
        raise InvalidParameter(f"Unknown type \"{args[0]}\" in HEALTHCHECK (try CMD)")
    else:
        rest = args[1:]
        hc = {"Test": ["CMD", *rest] if ins.json else ["CMD-SHELL", " ".join(rest)]}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                          ("start-interval", "StartInterval")):
            if flag in ins.flags:
                hc[key] = _duration(ins.flags[flag], flag)
        if "retries" in ins.flags:
            if not ins.flags["retries"].isdigit():
                raise InvalidParameter(f"invalid --retries: {ins.flags['retries']}")
            hc["Retries"] = int(ins.flags["retries"])
    st.run["Healthcheck"] = hc
    test = " ".join(json.dumps(t, ensure_ascii=False) for t in hc["Test"])
    times = " ".join(f'"{go_duration(hc.get(k, 0))}"' for k in ("Interval", "Timeout", "StartPeriod"))
    return f"HEALTHCHECK &{{[{test}] {times} {_go_rune(hc.get('Retries', 0))}}}"


def run_command(ins: Instruction, st: StageState) -> tuple[list[str], list[str]]:
    """(what the RUN container runs, what the history and the cache record: ``|N k=v …`` first when
    ARGs are in effect)."""
    cmd = list(ins.args) if ins.json else [*st.shell(), " ".join(ins.args)]
    if not cmd or not any(cmd):
        raise InvalidParameter("RUN requires at least one argument")
    args = st.arg_env()
    saved = [f"|{len(args)}", *args, *cmd] if args else cmd
    return cmd, saved


def shown(cmd: list[str]) -> str:
    return " ".join(cmd) if cmd[:2] == DEFAULT_SHELL or len(cmd) < 2 else shlex.join(cmd)
