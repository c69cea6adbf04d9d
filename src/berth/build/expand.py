"""Variable substitution in Dockerfile words, with the classic builder's rules (BuildKit's shell
lexer, which dockerd 20.10 vendors): ``$name``, ``${name}``, ``${name:-word}``, ``${name:+word}``,
``${name?msg}``/``${name:?msg}``; single quotes literal, double quotes expanding ``$`` and keeping
``\\"``, ``\\$`` and the escape character escaped; the escape character (``\\`` or `` ` ``) escaping
anything outside quotes. Unset names expand to "" (as the classic builder does).

``words`` also splits the result into words as the lexer does (what EXPOSE, VOLUME's shell form and
the COPY sources are made of): spaces that came from a ``$`` expansion split, quoted ones do not.
"""

from __future__ import annotations

from collections.abc import Mapping

from berth.errors import InvalidParameter

_SPECIAL = set("@*#?-$!0")
_MAX_LEN = 1 << 20  # a word may not grow past this by expansion


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.s, self.i, self.env, self.esc = text, 0, env, escape
        self.words: list[str] = []
        self.word: list[str] = []
        self.in_word = False

    # ---- scanner ----
    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1 if ch else 0
        return ch

    # ---- words ----
    def _add(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append("".join(self.word))
                self.word, self.in_word = [], False
        else:
            self._add_raw(ch)

    def _add_raw(self, text: str) -> None:
        self.word.append(text)
        self.in_word = True

    def _finish_words(self) -> list[str]:
        if self.word:
            self.words.append("".join(self.word))
            self.word, self.in_word = [], False
        return self.words

    # ---- grammar ----
    def run(self, stop: str = "") -> str:
        out: list[str] = []
        size = 0
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out)
            if ch in ("'", '"', "$"):
                piece = {"'": self._single, '"': self._double, "$": self._dollar}[ch]()
                if ch == "$":
                    for c in piece:
                        self._add(c)
                else:
                    self._add_raw(piece)
            else:
                ch = self.next()
                if ch == self.esc:
                    ch = self.next()
                    if not ch:
                        break
                    self._add_raw(ch)
                else:
                    self._add(ch)
                piece = ch
            out.append(piece)
            size += len(piece)
            if size > _MAX_LEN:
                raise InvalidParameter("a Dockerfile word grows past 1 MiB by variable substitution")
        if stop:
            raise InvalidParameter(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def _single(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise InvalidParameter("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise InvalidParameter("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self.next()
            if ch == self.esc:
                nxt = self.peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", self.esc):
                    ch = self.next()
            out.append(ch)

    def _name(self) -> str:
        ch = self.peek()
        if ch.isdigit():
            start = self.i
            while self.peek().isdigit():
                self.next()
            return self.s[start:self.i]
        if ch and ch in _SPECIAL:
            return self.next()
        start = self.i
        while (c := self.peek()) and (c.isalnum() or c == "_"):
            self.next()
        return self.s[start:self.i]

    def _dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self._name()
            return self.env.get(name, "") if name else "$"
        self.next()
        if not self.peek():
            raise InvalidParameter("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise InvalidParameter("syntax error: bad substitution")
        name = self._name()
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        if ch == "?":
            word = self._nested()
            if name not in self.env:
                raise InvalidParameter(f"{name}: {word or 'is not allowed to be unset'}")
            return self.env[name]
        if ch == ":":
            modifier = self.next()
            word = self._nested()
            value = self.env.get(name, "")
            if modifier == "+":
                return word if value else value
            if modifier == "-":
                return value or word
            if modifier == "?":
                if name not in self.env:
                    raise InvalidParameter(f"{name}: {word or 'is not allowed to be unset'}")
                if not value:
                    raise InvalidParameter(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            raise InvalidParameter(f"unsupported modifier ({modifier}) in substitution")
        raise InvalidParameter("missing ':' in substitution")

    def _nested(self) -> str:
        sub = _Lexer(self.s, self.env, self.esc)
        sub.i = self.i
        try:
            word = sub.run("}")
        except InvalidParameter:
            if sub.i >= len(self.s):
                raise InvalidParameter("syntax error: missing '}'") from None
            raise
        self.i = sub.i
        return word


def word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``text`` with its variables substituted and its quotes removed."""
    try:
        return _Lexer(text, env, escape).run()
    except InvalidParameter as exc:
        raise InvalidParameter(f"failed to process {text!r}: {exc.message}") from None


def words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """``text`` substituted and split into words as the lexer splits them."""
    lx = _Lexer(text, env, escape)
    try:
        lx.run()
    except InvalidParameter as exc:
        raise InvalidParameter(f"failed to process {text!r}: {exc.message}") from None
    return lx._finish_words()
