"""A Dockerfile as the classic builder reads it: BuildKit's own parser (the ``dockerfile`` package)
splits the text into instructions; this module checks them and groups them into stages. Variable
substitution (``expand``) and what each instruction does are the builder's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import dockerfile as _parser

from berth.errors import InvalidParameter

MAX_SIZE = 4 << 20  # bytes of Dockerfile
MAX_INSTRUCTIONS = 10000

INSTRUCTIONS = frozenset({"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                          "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"})
FLAGS = {  # the flags each instruction takes; others are refused by name
    "FROM": {"platform"}, "COPY": {"from", "chown", "chmod"}, "ADD": {"chown", "chmod"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
BUILDKIT_ONLY = {"mount", "network", "security", "link", "keep-git-dir", "checksum", "exclude", "parents"}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


@dataclass(frozen=True)
class Instruction:
    cmd: str  # upper case
    original: str  # as the Step line shows it
    args: tuple[str, ...]
    flags: dict[str, str] = field(default_factory=dict)
    json: bool = False  # exec (JSON) form
    line: int = 0
    sub: Instruction | None = None  # ONBUILD's instruction

    def __str__(self) -> str:
        return self.original


@dataclass
class Stage:
    from_: Instruction
    base: str  # the image word, not yet substituted
    name: str  # "AS name", lower case, or ""
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]
    escape: str = "\\"

    @property
    def steps(self) -> int:
        """The step count the classic builder shows: meta ARGs, FROMs and instructions."""
        return len(self.meta_args) + sum(1 + len(s.instructions) for s in self.stages)

    def stage_index(self, target: str) -> int:
        for i, s in enumerate(self.stages):
            if s.name == target.lower():
                return i
        raise InvalidParameter(f"failed to reach build target {target} in Dockerfile")


def _directives(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _DIRECTIVE.match(line.strip())
        if not m:
            break
        key = m.group(1).lower()
        if key in out:
            break
        out[key] = m.group(2)
    return out


def _flags(cmd: str, raw: tuple[str, ...], line: int) -> dict[str, str]:
    out = {}
    for f in raw:
        if not f.startswith("--"):
            raise InvalidParameter(f"Dockerfile line {line}: {cmd} flag {f!r} does not start with --")
        key, _, value = f[2:].partition("=")
        if key in BUILDKIT_ONLY:
            raise InvalidParameter(f"Dockerfile line {line}: the --{key} option requires BuildKit, which berth does "
                                   "not run (the classic builder)")
        if key not in FLAGS.get(cmd, set()):
            raise InvalidParameter(f"Dockerfile line {line}: unknown flag: {key}")
        out[key] = value
    return out


def _instruction(c: _parser.Command) -> Instruction:
    cmd = c.cmd.upper()
    if cmd not in INSTRUCTIONS:
        raise InvalidParameter(f"Dockerfile parse error line {c.start_line}: unknown instruction: {cmd}")
    if c.heredocs:
        raise InvalidParameter(f"Dockerfile line {c.start_line}: heredocs (<<{c.heredocs[0].name}) need BuildKit; "
                               "berth runs the classic builder, which does not have them")
    sub = None
    if cmd == "ONBUILD":
        if not c.sub_cmd:
            raise InvalidParameter(f"Dockerfile line {c.start_line}: ONBUILD requires at least one argument")
        inner = c.sub_cmd.upper()
        if inner in ("ONBUILD", "FROM", "MAINTAINER"):
            raise InvalidParameter(f"{inner} isn't allowed as an ONBUILD trigger")
        sub = Instruction(inner, c.original.split(None, 1)[1] if " " in c.original else inner, tuple(c.value),
                          _flags(inner, c.flags, c.start_line), c.json, c.start_line)
        return Instruction(cmd, c.original, tuple(c.value), {}, c.json, c.start_line, sub)
    return Instruction(cmd, c.original, tuple(c.value), _flags(cmd, c.flags, c.start_line), c.json, c.start_line)


def parse(data: bytes) -> Dockerfile:
    if len(data) > MAX_SIZE:
        raise InvalidParameter(f"the Dockerfile is larger than {MAX_SIZE >> 20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParameter("the Dockerfile is not UTF-8 text") from None
    text = text.lstrip("\ufeff")
    escape = _directives(text).get("escape", "\\")
    if escape not in ("\\", "`"):
        raise InvalidParameter(f"invalid ESCAPE '{escape}'. Must be ` or \\")
    try:
        commands = _parser.parse_string(text)
    except _parser.GoParseError as exc:
        raise InvalidParameter(f"Dockerfile parse error: {exc}") from None
    if len(commands) > MAX_INSTRUCTIONS:
        raise InvalidParameter(f"the Dockerfile has more than {MAX_INSTRUCTIONS} instructions")
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for c in commands:
        ins = _instruction(c)
        if ins.cmd == "FROM":
            words = list(ins.args)
            name = ""
            if len(words) == 3 and words[1].upper() == "AS":
                name = words[2].lower()
                if not re.fullmatch(r"[a-z][a-z0-9-_.]*", name):
                    raise InvalidParameter(f"invalid name for build stage: {words[2]!r}, name can't start with a "
                                           "number or contain symbols")
            elif len(words) != 1:
                raise InvalidParameter("FROM requires either one or three arguments")
            stages.append(Stage(ins, words[0], name))
        elif not stages:
            if ins.cmd != "ARG":
                raise InvalidParameter("no build stage in current context" if ins.cmd else
                                       "file with no instructions")
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise InvalidParameter("the Dockerfile has no FROM instruction" if commands else
                               "the Dockerfile (Dockerfile) cannot be empty")
    return Dockerfile(meta, stages, escape)
