"""Every public function, class and method of panko_collector has a docstring.

Public means a name without a leading underscore, in a module whose own
name has none either. Exempt: dunder methods and property setters (the
class and the getter say what they are), and a method that overrides one
documented in a base class of the same module (``inspect.getdoc`` shows the
base's). Found by reading the source with ``ast``, so nothing is imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "panko_collector"

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _is_setter(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter")
               for d in node.decorator_list)


def _documented_methods(classes: dict[str, ast.ClassDef], name: str,
                        seen: frozenset[str] = frozenset()) -> set[str]:
    """The methods that class ``name`` or one of its bases in ``classes`` documents."""
    cls = classes.get(name)
    if cls is None or name in seen:
        return set()
    found = {item.name for item in cls.body
             if isinstance(item, _FUNCTIONS) and ast.get_docstring(item) is not None}
    for base in cls.bases:
        if isinstance(base, ast.Name):
            found |= _documented_methods(classes, base.id, seen | {name})
    return found


def undocumented(tree: ast.Module) -> Iterator[str]:
    """The qualified names of the public definitions of ``tree`` without a docstring."""
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in tree.body:
        if not isinstance(node, (*_FUNCTIONS, ast.ClassDef)) or node.name.startswith("_"):
            continue
        if ast.get_docstring(node) is None:
            yield node.name
        if not isinstance(node, ast.ClassDef):
            continue
        inherited: set[str] = set()
        for base in node.bases:
            if isinstance(base, ast.Name):
                inherited |= _documented_methods(classes, base.id)
        for item in node.body:
            if (isinstance(item, _FUNCTIONS) and not item.name.startswith("_")
                    and not _is_setter(item) and item.name not in inherited
                    and ast.get_docstring(item) is None):
                yield f"{node.name}.{item.name}"


def _modules() -> list[object]:
    params: list[object] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if any(part.startswith("_") and part != "__init__.py" for part in relative.split("/")):
            continue
        params.append(pytest.param(path, id=relative))
    return params


SAMPLE = '''
def public(): pass
def _private(): pass
class Thing:
    """Documented."""
    def __init__(self): pass
    def method(self): pass
    @property
    def size(self):
        """The size."""
    @size.setter
    def size(self, value): pass
    def _helper(self): pass
class Base:
    """A base."""
    def hook(self):
        """What a hook does."""
class Child(Base):
    """A child."""
    def hook(self): pass
    def other(self): pass
class _Private:
    def method(self): pass
'''


def test_undocumented_finds_what_it_must() -> None:
    assert list(undocumented(ast.parse(SAMPLE))) == ["public", "Thing.method", "Child.other"]


def test_the_walk_finds_the_package() -> None:
    assert len(_modules()) > 40


@pytest.mark.parametrize("path", _modules())
def test_public_definitions_have_docstrings(path: Path) -> None:
    missing = list(undocumented(ast.parse(path.read_text(encoding="utf-8"))))
    assert not missing, f"{path.relative_to(REPO)}: no docstring on {', '.join(missing)}"
