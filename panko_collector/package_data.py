"""Where the files shipped inside the package are: the alembic environment
and the default event definitions.

The project keeps them outside the package's folder, in ``migrations/`` and
``etc/panko-collector/``; the build maps them into the package
(``[tool.setuptools.package-dir]`` in pyproject.toml), so an installed wheel
has them as ``panko_collector/migrations/`` and
``panko_collector/data/event_definitions.yaml``. Run from a source checkout
(an editable install, or the tests run from the tree) they are only where
the project keeps them.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SOURCE_TREE = _PACKAGE.parent


def _find(in_package: str, in_source_tree: str) -> Path:
    installed = _PACKAGE / in_package
    return installed if installed.exists() else _SOURCE_TREE / in_source_tree


def migrations_dir() -> Path:
    """The alembic environment (``env.py``, ``versions/``)."""
    return _find("migrations", "migrations")


def default_definitions() -> Path:
    """The event definitions file shipped with panko-collector."""
    return _find("data/event_definitions.yaml", "etc/panko-collector/event_definitions.yaml")
