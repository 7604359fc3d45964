"""ARCHITECTURE.md names only modules that exist.

Every repository path it gives (``panko_collector/...``, ``tests/...``,
``bench/...``, ``migrations/...``, ``etc/...``; ``{a,b}`` alternatives
expanded) must exist, and every dotted ``panko_collector.x.y`` name must be
a module, or a name defined at the top of one.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

from tests.conftest import REPO

DOCUMENT = REPO / "ARCHITECTURE.md"
_PATH = re.compile(r"\b(?:panko_collector|tests|bench|migrations|etc|systemd)/[\w./{},-]*")
_DOTTED = re.compile(r"\bpanko_collector(?:\.\w+)+")


def expand(path: str) -> list[str]:
    """``a/{b,c}.py`` -> ``a/b.py``, ``a/c.py`` (any number of groups)."""
    pieces = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(pieces)]
    return ["".join(c) for c in itertools.product(*choices)]


def named_paths(text: str) -> list[str]:
    """The repository paths ``text`` names, expanded, sentence punctuation dropped."""
    return sorted({p.rstrip(".,") for m in _PATH.findall(text) for p in expand(m)})


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module of the tree, or a top-level name of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else (
            base / "__init__.py")
        if not module.is_file():
            continue
        rest = parts[cut:]
        if not rest:
            return True
        if len(rest) > 1:
            return False
        return rest[0] in _top_level_names(module)
    return False


def _top_level_names(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
    return names


def test_expand_and_resolve() -> None:
    assert expand("a/{b,c}/{d,e}.py") == ["a/b/d.py", "a/b/e.py", "a/c/d.py", "a/c/e.py"]
    assert named_paths("see `panko_collector/opts.py`.") == ["panko_collector/opts.py"]
    assert resolves("panko_collector.storage.get_connection")
    assert resolves("panko_collector.conversion.values")
    assert not resolves("panko_collector.conversion.nothing_here")


def missing_names(text: str) -> list[str]:
    """What ``text`` names that does not exist."""
    missing = [p for p in named_paths(text) if not (REPO / p).exists()]
    missing += [d for d in sorted(set(_DOTTED.findall(text))) if not resolves(d)]
    return missing


def test_a_module_that_does_not_exist_is_reported() -> None:
    assert missing_names("`panko_collector/ingest/nowhere.py` and "
                         "`panko_collector.broker.nowhere`") == [
        "panko_collector/ingest/nowhere.py", "panko_collector.broker.nowhere"]


def test_every_module_named_exists() -> None:
    missing = missing_names(DOCUMENT.read_text(encoding="utf-8"))
    assert not missing, f"ARCHITECTURE.md names what does not exist: {missing}"
