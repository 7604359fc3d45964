"""Loading definitions files: what is accepted, and errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from panko_collector.conversion.converter import PACKAGED_DEFINITIONS
from panko_collector.conversion.definitions import (
    DEFAULT_TRAITS,
    load_definitions,
    parse_definitions,
)
from panko_collector.errors import DefinitionsError
from panko_collector.storage.models import Trait
from tests import corpus


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "defs.yaml"
    path.write_text(text)
    return str(path)


def test_shipped_ceilometer_file_loads(corpus_dir: Path) -> None:
    definitions = load_definitions(str(corpus.definitions_file(corpus_dir)))
    assert len(definitions) == 47
    # Merge keys: compute.instance.create.end has the anchor's traits plus its own.
    create_end = definitions[1]
    names = {t.name for t in create_end.traits}
    assert {"availability_zone", "instance_id", "launched_at", "service", "request_id"} <= names


def test_project_file_loads() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert load_definitions(str(repo / "etc/panko-collector/event_definitions.yaml"))
    # From a checkout the packaged file is the one in etc/ (the wheel test
    # checks that a wheel carries a copy inside the package).
    packaged = Path(PACKAGED_DEFINITIONS)
    assert packaged.resolve() == (repo / "etc/panko-collector/event_definitions.yaml").resolve()


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    path = write(tmp_path, """
- event_type: a.*
  traits: &base
    x: payload.x
    y: {fields: payload.y, type: int}
- event_type: a.b
  traits:
    <<: *base
    y: {fields: payload.y2, type: float}
- event_type: c
  traits:
    <<: [*base, {z: payload.z}]
""")
    _, second, third = load_definitions(path)
    by_name = {t.name: t for t in second.traits}
    assert by_name["x"].dtype == Trait.TEXT_TYPE
    assert by_name["y"].dtype == Trait.FLOAT_TYPE
    assert {t.name for t in third.traits} == set(DEFAULT_TRAITS) | {"x", "y", "z"}


def test_trait_forms(tmp_path: Path) -> None:
    path = write(tmp_path, """
- event_type: '*'
  traits:
    bare: payload.a
    bare_list: [payload.a, payload.b]
    constant: {fields: 5, type: int}
    upper_type: {fields: payload.a, type: DateTime}
    default_type: {fields: payload.a}
""")
    (definition,) = load_definitions(path)
    traits = {t.name: t for t in definition.traits}
    assert traits["bare"].dtype == Trait.TEXT_TYPE
    assert len(traits["bare_list"].getters) == 2
    assert traits["constant"].constant == 5
    assert traits["upper_type"].dtype == Trait.DATETIME_TYPE
    assert traits["default_type"].dtype == Trait.TEXT_TYPE


def test_plain_paths_compile_to_key_lookups(tmp_path: Path) -> None:
    path = write(tmp_path, """
- event_type: '*'
  traits:
    a: payload.a.b
    b: $.payload.a
    c: payload.'nova_object.data'.uuid
    d: payload["x"]
    e: payload.a[0]
    f: publisher_id.`split(., 1, 1)`
""")
    (definition,) = load_definitions(path)
    keys = {t.name: t.getters[0].keys for t in definition.traits if t.getters}
    assert keys["a"] == ("payload", "a", "b")
    assert keys["b"] == ("payload", "a")
    assert keys["c"] == ("payload", "nova_object.data", "uuid")
    assert keys["d"] == ("payload", "x")
    assert keys["e"] is None and keys["f"] is None


@pytest.mark.parametrize("text, fragments", [
    ("- event_type: a\n  traits:\n\tx: payload.x\n",
     ["invalid YAML", "line 3", "column 1"]),
    ("- event_type: a\n  traits:\n    x: {fields: payload.x, type: bool}\n",
     ["definition #1", "line 1", "'a'", "x", "unknown type 'bool'"]),
    ("- event_type: a\n  traits: {}\n- event_type: [b, c]\n  traits:\n"
     "    x: {fields: payload.x, plugin: nope}\n",
     ["definition #2", "line 3", "['b', 'c']", "unknown plugin 'nope'"]),
    ("- event_type: a\n  traits:\n    x: {fields: 'payload.[[['}\n",
     ["definition #1", "x", "invalid path"]),
    ("- event_type: a\n  traits:\n    x: {type: int}\n", ["x", "no 'fields'"]),
    ("- traits: {}\n", ["definition #1", "'event_type' is missing"]),
    ("- event_type: a\n", ["'traits' is missing"]),
    ("- event_type: a\n  traits: [1]\n", ["traits must be a mapping"]),
    ("- event_type: [a, 3]\n  traits: {}\n", ["event_type must be"]),
    ("- event_type: a\n  traits:\n    x: {fields: 1.5}\n", ["fields must be"]),
    ("- event_type: a\n  traits:\n    x: {fields: []}\n", ["fields must be"]),
    ("- event_type: a\n  traits:\n    x:\n", ["fields must be"]),
    ("- event_type: a\n  traits:\n    x: {fields: a, plugin: {parameters: {}}}\n",
     ["without a name"]),
    ("- event_type: a\n  traits:\n    x: {fields: a, plugin: {name: map}}\n",
     ["map", "values"]),
    ("- event_type: a\n  traits:\n    x: {fields: a, plugin: {name: split, "
     "parameters: {separator: ''}}}\n", ["split", "separator"]),
    ("- event_type: a\n  traits:\n    x: {fields: a, plugin: {name: bitfield, "
     "parameters: {flags: [{path: a}]}}}\n", ["bitfield", "bit"]),
    ("event_type: a\n", ["YAML list"]),
    ("", ["YAML list"]),
])
def test_load_errors_name_file_line_and_definition(tmp_path: Path, text: str,
                                                   fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DefinitionsError) as info:
        load_definitions(path)
    message = str(info.value)
    assert path in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DefinitionsError, match="cannot read"):
        load_definitions(str(tmp_path / "nope.yaml"))


def test_unknown_plugin_parameters_are_ignored_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "- event_type: a\n  traits:\n    x: {fields: a, plugin: {name: split,"
                           " parameters: {segmnet: 1}}}\n")
    assert load_definitions(path)
    assert "segmnet" in caplog.text


def test_parse_definitions_from_python() -> None:
    (definition,) = parse_definitions([{"event_type": ["!a.*"], "traits": {}}])
    assert definition.match_type("b") and not definition.match_type("a.x")
    assert not definition.is_catchall


def test_readme_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("## Event definitions")[1].split("```yaml")[1].split("```")[0]
    definitions = load_definitions(write(tmp_path, example))
    assert [d.event_types for d in definitions][1] == ["compute.instance.create.end"]
