"""The q grammar of GET /v2/events and Panko's JSON, without any service."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from panko_collector import errors
from panko_collector.api import query, render
from panko_collector.api.query import Identity, Query
from panko_collector.storage import models

MEMBER = Identity("user-a", "proj-a", ("member",))
ADMIN = Identity("user-admin", "proj-admin", ("admin",))


def args(qs: str, body: dict[str, Any] | None = None) -> query.Arguments:
    return query.collect(query.split_query_string(qs.encode()), body)


def faultstring(exc: pytest.ExceptionInfo[errors.RequestError]) -> str:
    return str(exc.value)


def test_parallel_arrays_are_matched_by_position_with_defaults() -> None:
    got = args("q.field=memory_mb&q.type=integer&q.value=512&q.field=state&q.value=active"
               "&q.op=ge")
    assert got.queries == [Query("memory_mb", "ge", "integer", "512"),
                           Query("state", None, None, "active")]
    flt = query.event_filter(got.queries, ADMIN, True)
    assert flt.traits_filter == [{"key": "memory_mb", "op": "ge", "integer": 512},
                                 {"key": "state", "op": "eq", "string": "active"}]


def test_indexed_form_and_body_form() -> None:
    got = args("q[1].field=b&q[1].value=2&q[0].field=a&q[0].value=1&limit=3")
    assert got.queries == [Query("a", None, None, "1"), Query("b", None, None, "2")]
    assert got.limit == "3"
    body = {"q": [{"field": "start_timestamp", "op": "ge", "value": "2021-03-01T12:02:00Z"},
                  {"field": "all_tenants", "value": "True"}], "limit": 2,
            "sort": ["generated:desc"]}
    got = args("", body)
    assert got.queries[1] == Query("all_tenants", None, None, "True")
    assert query.pagination(got, 100, 1000) == {"limit": 2, "marker": None,
                                                "sort": [("generated", "desc")]}
    # A body q with a query-string limit is fine.
    assert args("limit=5", {"q": []}).limit == "5"


@pytest.mark.parametrize(("qs", "body", "message"), [
    ("foo=bar", None, 'Unknown argument: "foo"'),
    ("bad_Stuff_here", None, 'Unknown argument: "bad_Stuff_here"'),
    ("q.bogus=1", None, 'Unknown argument: "q.bogus"'),
    ("q.field=a&q[0].field=b", None, "Parameter q was given several times"),
    ("q.field=a&q.value=1", {"q": []}, "Parameter q was given several times"),
    ("", {"foo": 1}, 'Unknown argument: "foo"'),
    ("", {"q": [{"field": "a"}], "limit": True}, "Invalid input for field/attribute limit"),
    ("", {"q": [{"field": "a", "value": 512}]},
     "Invalid input for field/attribute value. Value: '512'. Wrong type. "
     "Expected '<class 'str'>', got '<class 'int'>'"),
    ("", {"q": [{"field": "a", "value": "1", "nope": "x"}]}, "Unknown attribute"),
    ("", {"q": "a"}, "Invalid input for field/attribute q"),
    ("", {"q": ["a"]}, "Invalid input for field/attribute q"),
    ("", {"sort": [1]}, "Invalid input for field/attribute sort"),
])
def test_bad_arguments(qs: str, body: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(errors.BadRequest) as exc:
        args(qs, body)
    assert faultstring(exc).startswith(message)


def test_bodies() -> None:
    assert query.parse_body(b"", None) is None
    assert query.parse_body(b'{"q": []}', "application/json; charset=utf-8") == {"q": []}
    with pytest.raises(errors.UnsupportedMediaType, match="Unknown mimetype: text/plain"):
        query.parse_body(b'{"q": []}', "text/plain")
    with pytest.raises(errors.BadRequest, match="Request must be a JSON dict"):
        query.parse_body(b"[]", "application/json")
    with pytest.raises(errors.BadRequest, match="Request is not in valid JSON format"):
        query.parse_body(b"{", "application/json")
    with pytest.raises(errors.BadRequest, match="Request is not in valid JSON format"):
        query.parse_body(b"[" * 100000, "application/json")
    with pytest.raises(errors.BadRequest, match="Request is not in valid JSON format"):
        query.parse_body(b'{"q": "\xff"}', "application/json")


def test_query_strings_that_are_not_utf8_or_too_long() -> None:
    assert query.split_query_string(b"q.value=%C3%A9t%C3%A9") == [("q.value", "été")]
    for raw in (b"q.value=%ff", b"q.value=\xff"):
        with pytest.raises(errors.BadRequest, match="not valid UTF-8"):
            query.split_query_string(raw)
    with pytest.raises(errors.BadRequest, match="Too many query parameters"):
        query.split_query_string(b"&".join([b"q.field=a"] * 10000))
    with pytest.raises(errors.BadRequest, match="Too many filters"):
        args("q[100].field=a")
    with pytest.raises(errors.BadRequest, match="Too many filters"):
        args("", {"q": [{"field": "a", "value": "b"}] * 101})


def test_scoping() -> None:
    member = query.event_filter([], MEMBER, False)
    assert member.admin_proj is None and member.traits_filter == [
        {"key": "project_id", "op": "eq", "string": "proj-a"},
        {"key": "user_id", "op": "eq", "string": "user-a"}]
    assert query.event_filter([], ADMIN, True).admin_proj == "proj-admin"
    assert query.event_filter([], ADMIN, True).traits_filter == []
    everything = query.event_filter([Query("all_tenants", "ne", None, "True")], ADMIN, True)
    assert everything.admin_proj is None and everything.traits_filter == []
    garbage = query.event_filter([Query("all_tenants", None, None, "maybe")], ADMIN, True)
    assert garbage.admin_proj == "proj-admin"
    # For a member all_tenants is an ordinary trait filter: it matches nothing.
    member_all = query.event_filter([Query("all_tenants", None, None, "True")], MEMBER, False)
    assert member_all.traits_filter[-1] == {"key": "all_tenants", "op": "eq", "string": "True"}
    system = Identity("user-admin", None, ("admin",), "all")
    assert query.event_filter([], system, True).admin_proj is None


def test_special_fields() -> None:
    flt = query.event_filter([
        Query("event_type", None, None, "a.b"), Query("message_id", "eq", "integer", "m1"),
        Query("start_timestamp", "ge", None, "2021-03-01T13:02:00+01:00"),
        Query("end_timestamp", "le", None, "2021-03-01T12:03:00.5Z"),
    ], ADMIN, True)
    assert (flt.event_type, flt.message_id) == ("a.b", "m1")
    assert flt.start_timestamp == datetime.datetime(2021, 3, 1, 12, 2)
    assert flt.end_timestamp == datetime.datetime(2021, 3, 1, 12, 3, 0, 500000)
    # ManageIQ's first poll: an empty start means no bound; eq means the bound.
    flt = query.event_filter([Query("start_timestamp", "ge", None, ""),
                              Query("end_timestamp", "eq", None, "2021-03-01")], ADMIN, True)
    assert flt.start_timestamp is None
    assert flt.end_timestamp == datetime.datetime(2021, 3, 1)
    # The last one wins.
    flt = query.event_filter([Query("event_type", None, None, "x"),
                              Query("event_type", None, None, "y")], ADMIN, True)
    assert flt.event_type == "y"


@pytest.mark.parametrize(("q", "message"), [
    (Query("x", "like", None, "1"), "Operator like is not supported. The supported operators "
                                    "are: ('lt', 'le', 'eq', 'ne', 'ge', 'gt')"),
    (Query("event_type", "ne", None, "x"),
     "Operator ne is not supported. Only `eq' operator is available for field event_type"),
    (Query("start_timestamp", "gt", None, "2021-03-01"),
     "Operator gt is not supported. Only `ge' operator is available for field start_timestamp"),
    (Query("end_timestamp", "lt", None, "2021-03-01"),
     "Operator lt is not supported. Only `le' operator is available for field end_timestamp"),
    (Query("m", None, "boolean", "true"),
     "The data type boolean is not supported. The supported data type list is: "
     "['integer', 'float', 'string', 'datetime']"),
    (Query("m", None, "integer", "abc"),
     "Unable to convert the value abc to the expected data type integer."),
    (Query("m", None, "integer", str(2**63)), "Unable to convert the value"),
    (Query("m", None, "float", "nan"), "Unable to convert the value nan"),
    (Query("m", None, "datetime", "yesterday"), "Unable to convert the value yesterday"),
    (Query("start_timestamp", "ge", None, "yesterday"), "Unable to parse date string "
                                                        "'yesterday'"),
    (Query(None, None, None, "x"), "Invalid input for field/attribute field. Value: 'None'."),
    (Query("x", None, None, None), "Invalid input for field/attribute value. Value: 'None'."),
])
def test_bad_filters(q: Query, message: str) -> None:
    with pytest.raises(errors.BadRequest) as exc:
        query.event_filter([q], ADMIN, True)
    assert faultstring(exc).startswith(message)


def test_typed_values() -> None:
    flt = query.event_filter([
        Query("i", "lt", "integer", "-5"), Query("f", "ge", "float", "1.5"),
        Query("d", "gt", "datetime", "2021-03-01T12:00:00+02:00"),
        # python-ceilometerclient sends an empty type: a string, the value as is.
        Query("s", "ne", "", "512"),
    ], ADMIN, True)
    assert flt.traits_filter == [
        {"key": "i", "op": "lt", "integer": -5}, {"key": "f", "op": "ge", "float": 1.5},
        {"key": "d", "op": "gt", "datetime": datetime.datetime(2021, 3, 1, 10, 0)},
        {"key": "s", "op": "ne", "string": "512"}]


def test_pagination() -> None:
    page = query.pagination(args(""), 100, 1000)
    assert page == {"limit": 100, "marker": None}
    assert query.pagination(args("limit=0"), 100, 1000)["limit"] == 100
    assert query.pagination(args("limit=1"), 100, 1000)["limit"] == 1
    assert query.pagination(args("limit=100000"), 100, 1000)["limit"] == 1000
    assert query.pagination(args("limit=" + "9" * 400), 100, 1000)["limit"] == 1000
    page = query.pagination(args("sort=generated:desc&sort=message_id&marker=m"), 100, 1000)
    assert page == {"limit": 100, "marker": "m",
                    "sort": [("generated", "desc"), ("message_id", "asc")]}
    with pytest.raises(errors.BadRequest) as exc:
        query.pagination(args("limit=-1"), 100, 1000)
    assert faultstring(exc) == ("Invalid input for field/attribute limit. Value: '-1'. "
                                "the limit should be a positive integer.")
    with pytest.raises(errors.BadRequest) as exc:
        query.pagination(args("limit=abc"), 100, 1000)
    assert faultstring(exc) == (
        "Invalid input for field/attribute limit. Value: 'abc'. unable to convert to int. "
        "Error: invalid literal for int() with base 10: 'abc'")
    with pytest.raises(errors.BadRequest) as exc:
        query.pagination(args("sort=event_type:asc"), 100, 1000)
    assert faultstring(exc).startswith(
        "Invalid input for field/attribute sort. Value: 'event_type:asc'. the sort parameter")
    assert faultstring(exc).endswith("the supported sort keys are: ('message_id', 'generated')")
    with pytest.raises(errors.BadRequest) as exc:
        query.pagination(args("sort=generated:up"), 100, 1000)
    assert faultstring(exc).endswith("the supported sort directions are: ('asc', 'desc')")


def test_identity_from_headers() -> None:
    headers = {"X-User-Id": "u", "X-Project-Id": "", "X-Roles": "member, Admin,,",
               "OpenStack-System-Scope": "all"}
    identity = Identity.from_headers(headers.get)
    assert identity == Identity("u", None, ("member", "Admin"), "all")
    assert identity.policy_credentials()["system_scope"] == "all"


def test_render_event() -> None:
    T = models.Trait
    when = datetime.datetime(2021, 3, 1, 11, 59)
    ev = models.Event("m1", "compute.instance.create.end",
                      datetime.datetime(2021, 3, 1, 12, 0, 0, 123456),
                      [T("a_float", T.FLOAT_TYPE, 1e16), T("b_int", T.INT_TYPE, 512),
                       T("c_when", T.DATETIME_TYPE, when), T("d_text", T.TEXT_TYPE, "x")],
                      {"payload": {"k": "v"}})
    assert render.event(ev) == {
        "message_id": "m1", "event_type": "compute.instance.create.end",
        "traits": [{"name": "a_float", "value": "1e+16", "type": "float"},
                   {"name": "b_int", "value": "512", "type": "integer"},
                   {"name": "c_when", "value": "2021-03-01T11:59:00", "type": "datetime"},
                   {"name": "d_text", "value": "x", "type": "string"}],
        "generated": "2021-03-01T12:00:00.123456", "raw": {"payload": {"k": "v"}}}
    assert render.trait_description({"name": "n", "data_type": T.INT_TYPE}) == {
        "type": "integer", "name": "n"}
    assert render.error(404, "gone") == {"error_message": {
        "faultcode": "Client", "faultstring": "gone", "debuginfo": None}}
    assert render.error(503, "down")["error_message"]["faultcode"] == "Server"
    assert render.dumps({"v": "é"}) == '{"v": "\\u00e9"}'
