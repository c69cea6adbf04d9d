"""The Dockerfile's pure rules: substitution as the classic builder's lexer does it, .dockerignore
patterns as Docker matches them, and what the parser refuses."""

from __future__ import annotations

import pytest

from berth.build import dockerignore, expand
from berth.build.parse import parse
from berth.errors import InvalidParameter

ENV = {"a": "1", "empty": "", "sp": "x y"}


@pytest.mark.parametrize(("text", "want"), [
    ("$a", "1"), ("${a}", "1"), ("${empty:-def}", "def"), ("${unset:-def}", "def"), ("${a:-def}", "1"),
    ("${a:+alt}", "alt"), ("${empty:+alt}", ""), ("${unset:-$a}", "1"), ("'$a'", "$a"), ('"$a \\$a"', "1 $a"),
    ("\\$a", "$a"), ("a\\ b", "a b"), ("${sp}", "x y"), ("$unset", ""), ("$", "$"), ("pre${a}post", "pre1post"),
    ('"a\\"b"', 'a"b'), ('"a\\nb"', "a\\nb"),
])
def test_substitution(text: str, want: str) -> None:
    assert expand.word(text, ENV) == want


def test_substitution_with_backtick_escape_and_errors() -> None:
    assert expand.word("a`$b", {"b": "x"}, "`") == "a$b"
    assert expand.words('$sp "q r" s', ENV) == ["x", "y", "q r", "s"]
    for bad, words in (("${", "missing '}'"), ("${a", "missing ':'"), ("${:a}", "bad substitution"), ("${unset?must be set}", "must be set"),
                       ("${empty:?}", "is not allowed to be empty"), ("'open", "single-quote"), ("${a:%x}", "modifier")):
        with pytest.raises(InvalidParameter, match=words):
            expand.word(bad, ENV)
    with pytest.raises(InvalidParameter, match="1 MiB"):
        expand.word("$big$big$big", {"big": "x" * (600 << 10)})


@pytest.mark.parametrize(("path", "excluded"), [
    ("x.md", True), ("README.md", False), ("node_modules/a/b", True), ("src/a/b.pyc", True), ("b.pyc", True),
    ("build/x", True), ("docs/a/b/secret", True), ("docs/secret", True), ("abc", True), ("zy", True),
    ("xy", False), ("src/x.md", False), ("ok", False), (".", False),
])
def test_dockerignore_patterns(path: str, excluded: bool) -> None:
    m = dockerignore.read("# comment\n*.md\n!README.md\nnode_modules\n**/*.pyc\n/build\ndocs/**/secret\na?c\n"
                          "[!x]y\n\n")
    assert m.excluded(path) is excluded


def test_dockerignore_refuses_bad_patterns() -> None:
    with pytest.raises(InvalidParameter, match="illegal exclusion"):
        dockerignore.Matcher(["!"])
    with pytest.raises(InvalidParameter, match="unclosed"):
        dockerignore.Matcher(["[abc"])


def test_parser_groups_stages_and_refuses_what_the_classic_builder_cannot_run() -> None:
    df = parse(b"ARG V=1\nFROM a:$V AS one\nRUN x\nFROM one\nCOPY --from=one /a /b\n")
    assert df.steps == 5 and [s.name for s in df.stages] == ["one", ""] and df.stage_index("ONE") == 0
    for text, words in ((b"RUN x\n", "no build stage"), (b"FROM a\nFOO b\n", "unknown instruction: FOO"),
                        (b"FROM a\nRUN --mount=type=cache,target=/x true\n", "requires BuildKit"),
                        (b"FROM a\nCOPY --bogus=1 a b\n", "unknown flag: bogus"),
                        (b"FROM a\nRUN <<EOF\nx\nEOF\n", "heredocs"), (b"", "no instructions"),
                        (b"FROM a b\n", "one or three"), (b"FROM a AS 1x\n", "invalid name for build stage"),
                        (b"\xff\xfe", "UTF-8"), (b"FROM a\n" + b"#\n" * (3 << 20), "larger than 4 MiB")):
        with pytest.raises(InvalidParameter, match=words):
            parse(text)
    with pytest.raises(InvalidParameter, match="failed to reach build target nope"):
        parse(b"FROM a\n").stage_index("nope")


def test_dockerignore_matching_takes_linear_time_whatever_the_pattern() -> None:
    """Patterns a backtracking regex takes minutes over (``**/**/…``, ``*a*a*…b``) answer at once (a
    regression would run into pytest's timeout)."""
    assert dockerignore.Matcher(["**/" * 12 + "x"]).excluded("a/" * 25 + "x")
    assert not dockerignore.Matcher(["**/" * 12 + "x"]).excluded("a/" * 25 + "y")
    assert not dockerignore.Matcher(["*a" * 12 + "*b"]).excluded("a" * 250)
    assert dockerignore.Matcher(["x**y", "[a-c]x"]).excluded("xa/y")
    assert not dockerignore.Matcher(["x**y"]).excluded("xay")
    with pytest.raises(InvalidParameter, match="bad range"):
        dockerignore.Matcher(["[z-a]"])
    with pytest.raises(InvalidParameter, match="longer than"):
        dockerignore.Matcher(["a" * 5000])
