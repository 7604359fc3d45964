"""pyproject.toml declares what the code imports, bounded where the code
relies on a library's internals, and the set-up installs the versions the
tests passed with (constraints.txt)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: Loaded by SQLAlchemy from the URL's scheme, never imported by name.
DRIVERS = {"psycopg", "pymysql"}
#: Libraries whose private names panko_collector/compat/ touches, and
#: SQLAlchemy, whose next minor release may change what the storage relies on.
BOUNDED = {"amqp", "cotyledon", "jsonpath-ng", "kombu", "prometheus-client", "sqlalchemy"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(key: str = "") -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    listed = project["optional-dependencies"][key] if key else project["dependencies"]
    return {canonical(r.name): r for r in map(Requirement, listed)}


def imported_distributions() -> set[str]:
    """The distributions whose modules the package and its migrations import."""
    modules: set[str] = set()
    for path in [*(REPO / "panko_collector").rglob("*.py"), *(REPO / "migrations").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"panko_collector", "__future__"}
    owners = importlib.metadata.packages_distributions()
    return {canonical(d) for m in modules for d in owners.get(m, [m])}


def test_every_import_is_declared_and_every_dependency_imported() -> None:
    declared = set(requirements())
    assert imported_distributions() == declared - DRIVERS


def test_libraries_whose_internals_are_used_have_an_upper_bound() -> None:
    runtime = requirements()
    for name in BOUNDED:
        assert any(s.operator == "<" for s in runtime[name].specifier), name
    # oslo_config_glue.link, which the daemon calls, came with cotyledon 2.2.
    assert not runtime["cotyledon"].specifier.contains("2.1.9")
    assert runtime["cotyledon"].specifier.contains("2.2.0")


def test_constraints_pin_every_dependency_within_its_bounds() -> None:
    text = (REPO / "constraints.txt").read_text()
    assert "pip freeze --exclude-editable" in text  # how to regenerate it
    pins = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonical(name)] = Version(version)
    for name, requirement in {**requirements(), **requirements("test")}.items():
        assert name in pins, name
        assert requirement.specifier.contains(pins[name]), (name, pins[name])


def test_the_set_up_command_installs_the_constraints() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- ci:setup -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) == 1
    assert "pip install -c constraints.txt '.[test]'" in block


def test_no_symbolic_links_in_the_package() -> None:
    assert [p for p in (REPO / "panko_collector").rglob("*") if p.is_symlink()] == []


def test_shipped_files_are_found_from_the_source_tree() -> None:
    from panko_collector import package_data

    if Path(package_data.__file__).parent.parent != REPO:
        return  # an installed copy: the wheel test covers it
    assert package_data.migrations_dir() == REPO / "migrations"
    assert package_data.default_definitions() == \
        REPO / "etc" / "panko-collector" / "event_definitions.yaml"


def test_every_package_is_built_into_the_wheel() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "panko_collector").rglob("__init__.py")}
    assert found <= listed
