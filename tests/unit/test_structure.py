"""The shape #12 gave the code, kept: no module over 500 lines, no class with more than 25 public
methods, no import cycle between modules (the layer contracts are import-linter's, in `make lint`)."""

from __future__ import annotations

import ast
import pathlib

import grimp
import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "berth"
MAX_LINES = 500
MAX_PUBLIC_METHODS = 25


def _modules() -> list[pathlib.Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_module_is_over_500_lines() -> None:
    assert len(_modules()) > 100  # the tree is where it is looked for
    big = {str(p.relative_to(SRC)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big


def test_no_class_has_more_than_25_public_methods() -> None:
    big = {}
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ClassDef):
                public = [f for f in node.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                          and not f.name.startswith("_")]
                if len(public) > MAX_PUBLIC_METHODS:
                    big[f"{p.relative_to(SRC)}:{node.name}"] = len(public)
    assert not big


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("berth", cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    """(module, imported) for every import that some chain leads back from."""
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    return cycles


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert not _cycles(graph)


def test_the_cycle_check_finds_one(graph: grimp.ImportGraph) -> None:
    graph.add_import(importer="berth.errors", imported="berth.daemon.server")  # the server imports errors
    try:
        assert ("berth.errors", "berth.daemon.server") in _cycles(graph)
    finally:
        graph.remove_import(importer="berth.errors", imported="berth.daemon.server")
    assert not _cycles(graph)
