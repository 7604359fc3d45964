"""Conversion rules, one by one (Ceilometer 27's semantics, plus our one difference)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from oslo_config import cfg

from panko_collector import opts
from panko_collector.conversion.converter import PACKAGED_DEFINITIONS, Converter
from panko_collector.conversion.decoder import decode_object
from panko_collector.conversion.definitions import parse_definitions
from panko_collector.errors import DefinitionsError
from panko_collector.storage.models import Event, Trait
from tests import corpus

WHEN = datetime.datetime(2020, 1, 2, 3, 4, 5)


def converter(yaml_text: str, **kwargs: Any) -> Converter:
    return Converter(parse_definitions(yaml.safe_load(yaml_text)), **kwargs)


def notification(event_type: str = "compute.instance.create.end", payload: Any = None,
                 **extra: Any) -> dict[str, Any]:
    body = {
        "event_type": event_type,
        "publisher_id": "compute.host-1.example.org",
        "priority": "INFO",
        "ctxt": {"request_id": "req-1", "user_id": "ctx-user", "project_id": "ctx-project"},
        "payload": {} if payload is None else payload,
        "metadata": {"message_id": "m-1", "timestamp": "2012-05-08 20:23:48.028195"},
    }
    body.update(extra)
    return body


def convert(conv: Converter, body: dict[str, Any]) -> Event | None:
    return conv.convert(decode_object(body), WHEN)


def traits(event: Event | None) -> dict[str, tuple[int, Any]]:
    assert event is not None
    return {t.name: (t.dtype, t.value) for t in event.traits}


# --- matching ---------------------------------------------------------------

MATCHING = """
- event_type: compute.instance.*
  traits: {which: {fields: 1}}
- event_type: [compute.instance.create.*, '!compute.instance.create.start']
  traits: {which: {fields: 2}}
- event_type: ['!image.*', '!compute.*']
  traits: {which: {fields: 3}}
- event_type: 'volume.?.end'
  traits: {which: {fields: 4}}
"""


@pytest.mark.parametrize("event_type, which", [
    ("compute.instance.create.end", "2"),       # last match wins
    ("compute.instance.create.start", "1"),     # excluded from #2, so #1
    ("compute.instance.delete.end", "1"),
    ("network.create.end", "3"),                # only exclusions: everything else
    ("volume.x.end", "4"),                      # later definition wins over #3
    ("image.upload", None),                     # unmatched: implicit catch-all
    ("COMPUTE.instance.create.end", "3"),       # globs are case-sensitive
])
def test_matching(event_type: str, which: str | None) -> None:
    event = convert(converter(MATCHING), notification(event_type))
    assert traits(event).get("which", (None, None))[1] == which


def test_unmatched_gets_default_traits_or_is_dropped() -> None:
    body = notification("image.upload", {"tenant_id": "t-1", "user_id": "u-1"})
    event = convert(converter(MATCHING), body)
    assert traits(event) == {
        "service": (Trait.TEXT_TYPE, "compute.host-1.example.org"),
        "request_id": (Trait.TEXT_TYPE, "req-1"),
        "project_id": (Trait.TEXT_TYPE, "t-1"),
        "tenant_id": (Trait.TEXT_TYPE, "t-1"),
        "user_id": (Trait.TEXT_TYPE, "u-1"),
    }
    assert convert(converter(MATCHING, drop_unmatched=True), body) is None
    # A catch-all of the file's own is used rather than the implicit one.
    own = converter("- {event_type: '*', traits: {own: {fields: 1}}}", drop_unmatched=False)
    assert "own" in traits(convert(own, body))


@pytest.mark.parametrize("drop", [True, False])
@pytest.mark.parametrize("yaml_text", [
    None,  # the shipped definitions
    "- {event_type: ['compute.*', '!compute.instance.exists'], traits: {}}\n"
    "- {event_type: ['!image.*'], traits: {}}\n"
    "- {event_type: 'volume.?.end', traits: {}}\n",
    "- {event_type: '*', traits: {}}\n- {event_type: 'a.[bc]', traits: {}}\n",
    "- {event_type: ['a.*', '*'], traits: {}}\n- {event_type: 'x.*', traits: {}}\n",
    "[]",
])
def test_definition_lookup_is_the_last_match(yaml_text: str | None, drop: bool) -> None:
    """The one-regex shortcut for unmatched types picks what a scan of every
    definition picks, exclusions and catch-alls included."""
    if yaml_text is None:
        yaml_text = Path(PACKAGED_DEFINITIONS).read_text()
    conv = converter(yaml_text, drop_unmatched=drop)
    types = {n["event_type"] for _label, n in corpus.notifications()
             if isinstance(n.get("event_type"), str)}
    types |= {"compute.instance.exists", "compute.x", "image.upload", "image", "volume.1.end",
              "volume.12.end", "a.b", "a.d", "a.", "x.y", "unmatched.type", "", "\n",
              "compute.instance.exists\n", "identity.user.created.x", "*", "[", "(?:"}
    for event_type in sorted(types):
        scan = next((d for d in conv.definitions if d.match_type(event_type)), None)
        assert conv.definition_for(event_type) is scan, event_type


def test_definition_cache_is_bounded() -> None:
    conv = converter(MATCHING)
    for i in range(5000):
        conv.definition_for(f"type.{i}")
    assert len(conv._cache) <= 4096


# --- the event itself ---------------------------------------------------------


def test_event_identity_generated_and_raw() -> None:
    conv = converter("[]", store_raw=["Error"])
    event = convert(conv, notification())
    assert event is not None
    assert event.message_id == "m-1"
    assert event.event_type == "compute.instance.create.end"
    assert event.generated == datetime.datetime(2012, 5, 8, 20, 23, 48, 28195)
    assert event.raw == {}
    error = convert(conv, notification(priority="ERROR"))
    assert error is not None and error.raw["payload"] == {} and error.raw["metadata"]["message_id"]
    assert convert(converter("[]", store_raw=["info,error"]), notification()).raw  # type: ignore[union-attr]


def test_generated_falls_back_to_received_then_now() -> None:
    conv = converter("[]")
    body = notification()
    body["metadata"]["timestamp"] = "garbage"
    assert conv.convert(decode_object(body), WHEN).generated == WHEN  # type: ignore[union-attr]
    del body["metadata"]["timestamp"]
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    generated = conv.convert(decode_object(body)).generated  # type: ignore[union-attr]
    assert generated.tzinfo is None and generated >= before
    # Without a timestamp of its own, paths see the time used.
    conv = converter("- {event_type: '*', traits: {ts: metadata.timestamp}}")
    assert traits(conv.convert(decode_object(body), WHEN))["ts"][1] == "2020-01-02 03:04:05"


# --- traits -----------------------------------------------------------------


def test_default_traits_and_overrides() -> None:
    conv = converter("""
- event_type: '*'
  traits:
    service: payload.host
    user_id: {fields: ctxt.user_id}
""")
    got = traits(convert(conv, notification(payload={"host": "h", "user_id": "p-user"})))
    assert got["service"] == (Trait.TEXT_TYPE, "h")
    assert got["user_id"] == (Trait.TEXT_TYPE, "ctx-user")
    assert got["project_id"] == (Trait.TEXT_TYPE, "ctx-project")  # from ctxt.project_id
    assert got["request_id"] == (Trait.TEXT_TYPE, "req-1")


def test_first_non_null_of_a_list_and_missing_paths() -> None:
    conv = converter("""
- event_type: '*'
  traits:
    first: [payload.none, payload.missing.deeper, payload.b, payload.a]
    absent: payload.missing
    null: payload.none
    through_scalar: payload.b.c
""")
    got = traits(convert(conv, notification(payload={"none": None, "a": "A", "b": "B"})))
    assert got["first"] == (Trait.TEXT_TYPE, "B")
    assert "absent" not in got and "null" not in got and "through_scalar" not in got


def test_constants() -> None:
    conv = converter("""
- event_type: '*'
  traits:
    text: {fields: 42}
    num: {fields: 42, type: int}
    flag: {fields: true}
    one_element: {fields: [7], type: float}
    with_plugin: {fields: 3, plugin: {name: map, parameters: {values: {3: x}}}}
""")
    got = traits(convert(conv, notification()))
    assert got["text"] == (Trait.TEXT_TYPE, "42")
    assert got["num"] == (Trait.INT_TYPE, 42)
    assert got["flag"] == (Trait.TEXT_TYPE, "True")
    assert got["one_element"] == (Trait.FLOAT_TYPE, 7.0)
    assert got["with_plugin"] == (Trait.TEXT_TYPE, "3")  # a constant ignores the plugin


VALUES = """
- event_type: '*'
  traits:
    int_str: {fields: payload.int_str, type: int}
    int_float: {fields: payload.float, type: int}
    int_bool: {fields: payload.bool, type: int}
    float_str: {fields: payload.float_str, type: float}
    float_int: {fields: payload.int, type: float}
    text_int: payload.int
    text_float: payload.float
    text_bool: payload.bool
    text_dict: payload.dict
    text_list: payload.list
    text_long: payload.long
    text_empty: payload.empty
    int_empty: {fields: payload.empty, type: int}
    dt_empty: {fields: payload.empty, type: datetime}
    dt_space: {fields: payload.dt_space, type: datetime}
    dt_zone: {fields: payload.dt_zone, type: datetime}
    dt_z: {fields: payload.dt_z, type: datetime}
"""


def test_value_conversion() -> None:
    payload = {
        "int_str": "40", "float": 3.7, "bool": True, "float_str": "1e3", "int": 5,
        "dict": {"a": 1}, "list": ["x", 2], "long": "é" * 300, "empty": "",
        "dt_space": "2016-03-07 16:23:09.259310", "dt_zone": "2016-08-19T10:20:49+02:00",
        "dt_z": "2012-10-29T13:42:11Z",
    }
    got = traits(convert(converter(VALUES), notification(payload=payload)))
    assert got["int_str"] == (Trait.INT_TYPE, 40)
    assert got["int_float"] == (Trait.INT_TYPE, 3)
    assert got["int_bool"] == (Trait.INT_TYPE, 1)
    assert got["float_str"] == (Trait.FLOAT_TYPE, 1000.0)
    assert got["float_int"] == (Trait.FLOAT_TYPE, 5.0)
    assert got["text_int"] == (Trait.TEXT_TYPE, "5")
    assert got["text_float"] == (Trait.TEXT_TYPE, "3.7")
    assert got["text_bool"] == (Trait.TEXT_TYPE, "True")
    assert got["text_dict"] == (Trait.TEXT_TYPE, "{'a': 1}")
    assert got["text_list"] == (Trait.TEXT_TYPE, "['x', 2]")
    assert got["text_long"] == (Trait.TEXT_TYPE, "é" * 255)
    assert got["text_empty"] == (Trait.TEXT_TYPE, "")
    assert "int_empty" not in got and "dt_empty" not in got
    assert got["dt_space"] == (Trait.DATETIME_TYPE,
                               datetime.datetime(2016, 3, 7, 16, 23, 9, 259310))
    assert got["dt_zone"] == (Trait.DATETIME_TYPE, datetime.datetime(2016, 8, 19, 8, 20, 49))
    assert got["dt_z"] == (Trait.DATETIME_TYPE, datetime.datetime(2012, 10, 29, 13, 42, 11))
    assert got["dt_z"][1].tzinfo is None


def test_bad_value_costs_only_that_trait(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[tuple[str, str, Any, Exception]] = []
    conv = converter(VALUES, on_trait_error=lambda *args: errors.append(args))
    payload = {"int_str": "abc", "float": "3.7", "float_str": [1], "dt_space": "2015-13-01",
               "dt_zone": 12, "int": 9}
    with caplog.at_level("WARNING"):
        got = traits(convert(conv, notification("odd.type", payload=payload)))
    assert got["text_int"] == (Trait.TEXT_TYPE, "9")  # the event is kept
    for name in ("int_str", "int_float", "float_str", "dt_space", "dt_zone"):
        assert name not in got
    assert sorted(e[1] for e in errors) == ["dt_space", "dt_zone", "float_str",
                                           "int_float", "int_str"]
    assert all(e[0] == "odd.type" for e in errors)
    assert ("int_str", "abc") in [(e[1], e[2]) for e in errors]
    assert isinstance(errors[0][3], Exception)
    assert "odd.type" in caplog.text and "int_str" in caplog.text and "'abc'" in caplog.text


PATHS = """
- event_type: '*'
  traits:
    quoted: payload.'nova_object.data'.uuid
    dquoted: payload."nova_object.data".uuid
    rooted: $.payload.host
    brackets: payload['host']
    filtered: payload.glance_metadata[?key=image_id].value
    filtered_int: payload.ips[?version=4].address
    filtered_gt: payload.ips[?version>4].address
    index: payload.volume_attachment[0].server_id
    index_neg: payload.volume_attachment[-1].server_id
    index_str: payload.host[0]
    star_list: payload.ips[*].address
    star_dict: payload.'nova_object.data'.*
    slice_dict: payload.'nova_object.data'[*].uuid
    host: publisher_id.`split(., 1, 1)`
    svc: publisher_id.`split(., 0, -1)`
    past_end: publisher_id.`split(., 9, -1)`
    deep: payload..server_id
    ctx: ctxt.request_id
"""


def test_paths() -> None:
    payload = {
        "nova_object.data": {"uuid": "U-1"},
        "host": "h-1",
        "glance_metadata": [{"key": "other", "value": "O"}, {"key": "image_id", "value": "IMG"}],
        "ips": [{"version": "6", "address": "::1"}, {"version": 4, "address": "10.0.0.1"}],
        "volume_attachment": [{"server_id": "S-1"}, {"server_id": "S-2"}],
    }
    got = {k: v for k, (_, v) in traits(convert(converter(PATHS),
                                                notification(payload=payload))).items()}
    assert got["quoted"] == got["dquoted"] == got["star_dict"] == got["slice_dict"] == "U-1"
    assert got["rooted"] == got["brackets"] == "h-1"
    assert got["filtered"] == "IMG"
    assert got["filtered_int"] == "10.0.0.1"
    assert got["filtered_gt"] == "::1"  # int("6") > 4, as jsonpath-rw-ext compares
    assert got["index"] == "S-1" and got["index_neg"] == "S-2" and got["deep"] == "S-1"
    assert got["index_str"] == "h"  # a string can be indexed (jsonpath-rw)
    assert got["star_list"] == "::1"
    assert got["host"] == "host-1.example.org" and got["svc"] == "compute"
    assert "past_end" not in got
    assert got["ctx"] == "req-1"


PLUGINS = """
- event_type: '*'
  traits:
    split_default: {fields: publisher_id, plugin: split}
    split_params:
      fields: publisher_id
      plugin: {name: split, parameters: {separator: '.', segment: 1, max_split: 1}}
    split_last: {fields: publisher_id, plugin: {name: split, parameters: {segment: -1}}}
    split_missing: {fields: publisher_id, plugin: {name: split, parameters: {segment: 9}}}
    split_number: {fields: payload.num, plugin: {name: split, parameters: {separator: '2'}}}
    bits:
      type: int
      fields: [payload.state, payload.old_state, payload.num, 'payload.items[0].x']
      plugin:
        name: bitfield
        parameters:
          initial_bitfield: 1
          flags:
            - {path: payload.state, bit: 1, value: active}
            - {path: payload.old_state, bit: 2}
            - {path: payload.num, bit: 3, value: 123}
            - {path: payload.nothing, bit: 4}
            - {path: 'payload.items.[0].x', bit: 5}
    bits_nothing:
      type: int
      fields: payload.nothing
      plugin: {name: bitfield, parameters: {initial_bitfield: 8}}
    age:
      type: float
      fields: [payload.created_at, payload.launched_at]
      plugin: timedelta
    age_text: {fields: [payload.created_at, payload.launched_at], plugin: timedelta}
    age_one: {fields: [payload.created_at], plugin: timedelta, type: float}
    age_bad: {fields: [payload.created_at, payload.state], plugin: timedelta, type: float}
    mapped:
      type: int
      fields: payload.state
      plugin: {name: map, parameters: {values: {ACTIVE: 1}, case_sensitive: false, default: 0}}
    mapped_cs:
      fields: payload.state
      plugin: {name: map, parameters: {values: {ACTIVE: up}}}
    mapped_default:
      fields: payload.state
      plugin: {name: map, parameters: {values: {ACTIVE: up}, default: unknown}}
    mapped_unhashable:
      fields: payload.items
      plugin: {name: map, parameters: {values: {a: b}, default: odd}}
"""


def test_plugins() -> None:
    payload = {"state": "active", "old_state": "building", "num": 123,
               "created_at": "2020-01-01 00:00:00", "launched_at": "2020-01-01T01:00:30+00:00",
               "items": [{"x": 1}]}
    got = traits(convert(converter(PLUGINS), notification(payload=payload)))
    assert got["split_default"] == (Trait.TEXT_TYPE, "compute")
    assert got["split_params"] == (Trait.TEXT_TYPE, "host-1.example.org")
    assert got["split_last"] == (Trait.TEXT_TYPE, "org")
    assert "split_missing" not in got
    assert got["split_number"] == (Trait.TEXT_TYPE, "1")
    assert got["bits"] == (Trait.INT_TYPE, 1 | 2 | 4 | 8 | 32)
    assert got["bits_nothing"] == (Trait.INT_TYPE, 8)
    assert got["age"] == (Trait.FLOAT_TYPE, 3630.0)
    assert got["age_text"] == (Trait.TEXT_TYPE, "3630.0")
    assert "age_one" not in got and "age_bad" not in got
    assert got["mapped"] == (Trait.INT_TYPE, 1)
    assert "mapped_cs" not in got  # case-sensitive miss, default None
    assert got["mapped_default"] == (Trait.TEXT_TYPE, "unknown")
    assert got["mapped_unhashable"] == (Trait.TEXT_TYPE, "odd")


# --- configuration ------------------------------------------------------------


def make_conf(tmp_path: Path, **event: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    for group, options in opts.list_opts():
        conf.register_opts(options, group=group)
    conf([], project="panko-collector-test", default_config_files=[])
    for key, value in event.items():
        conf.set_override(key, value, group="event")
    return conf


def test_from_conf_defaults_to_the_packaged_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    conv = Converter.from_conf(make_conf(tmp_path))
    assert Path(PACKAGED_DEFINITIONS).is_file()
    assert not conv.drop_unmatched and conv.store_raw == frozenset()


def test_from_conf_reads_event_options(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("- {event_type: a, traits: {x: payload.x}}\n")
    conf = make_conf(tmp_path, definitions_cfg_file=str(path),
                     drop_unmatched_notifications=True, store_raw=["info", "Error,warn"])
    conv = Converter.from_conf(conf)
    assert conv.drop_unmatched and conv.store_raw == {"info", "error", "warn"}
    assert convert(conv, notification("b")) is None
    conf.set_override("definitions_cfg_file", "no-such-file.yaml", group="event")
    with pytest.raises(DefinitionsError, match=r"no-such-file\.yaml"):
        Converter.from_conf(conf)


def test_relative_definitions_path_is_found_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "defs.yaml").write_text("- {event_type: a, traits: {x: payload.x}}\n")
    config = tmp_path / "panko-collector.conf"
    config.write_text("[event]\ndefinitions_cfg_file = defs.yaml\n")
    conf = cfg.ConfigOpts()
    for group, options in opts.list_opts():
        conf.register_opts(options, group=group)
    conf(["--config-file", str(config)], project="panko-collector-test")
    conv = Converter.from_conf(conf)
    assert "x" in traits(convert(conv, notification("a", {"x": 1})))


# --- the corpus ---------------------------------------------------------------


def test_whole_corpus_converts_with_ceilometer_definitions(corpus_dir: Path) -> None:
    from panko_collector.conversion.definitions import load_definitions

    conv = Converter(load_definitions(str(corpus.definitions_file(corpus_dir))),
                     on_trait_error=lambda *args: None)
    seen = 0
    for label, body in corpus.notifications(root=corpus_dir):
        event = conv.convert(decode_object(body), WHEN)
        assert event is not None, label
        assert {"service"} <= {t.name for t in event.traits}, label
        json.dumps([t.as_dict() for t in event.traits], default=str)
        seen += 1
    assert seen == 584


def test_a_failing_callback_does_not_cost_the_event() -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("counter broke")

    conv = converter(VALUES, on_trait_error=broken)
    got = traits(convert(conv, notification(payload={"int_str": "abc", "int": 1})))
    assert "int_str" not in got and got["float_int"] == (Trait.FLOAT_TYPE, 1.0)


def test_a_deeply_nested_bad_value_is_reported_briefly(caplog: pytest.LogCaptureFixture) -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    errors: list[Any] = []
    conv = converter("- {event_type: '*', traits: {n: {fields: payload.v, type: int},"
                     " t: payload.v}}", on_trait_error=lambda *args: errors.append(args))
    got = traits(conv.convert(decode_object(notification(payload={"v": deep})), WHEN))
    assert "n" not in got and "t" not in got  # str() of it fails too: dropped, not raised
    assert [e[1] for e in errors] == ["n", "t"]
    assert max(len(line) for line in caplog.text.splitlines()) < 1000


def test_a_repeated_bad_value_warns_once_and_is_always_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    errors: list[tuple[str, str, Any, Exception]] = []
    conv = converter(VALUES, on_trait_error=lambda *args: errors.append(args))
    with caplog.at_level("DEBUG", logger="panko_collector.conversion.converter"):
        for _ in range(3):
            convert(conv, notification("odd.type", payload={"int_str": "abc"}))
        convert(conv, notification("other.type", payload={"int_str": "abc"}))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2  # one per event type and trait
    assert any("odd.type" in w for w in warnings) and any("other.type" in w for w in warnings)
    assert sum(r.levelname == "DEBUG" and "int_str" in r.getMessage()
               for r in caplog.records) == 2
    assert [e[0] for e in errors] == ["odd.type"] * 3 + ["other.type"]
