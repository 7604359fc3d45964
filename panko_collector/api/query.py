"""The query grammar of ``GET /v2/events``: request parameters to storage arguments.

Pure functions, no I/O. Filters come in three forms, as Panko's clients
send them: parallel query-string arrays (``q.field=a&q.op=eq&q.value=x``,
matched by position), indexed ones (``q[0].field=a``), or a JSON body on
the GET (``{"q": [{"field": ..}], "limit": N, "sort": [..]}``). Every
invalid input raises ``errors.BadRequest`` (or ``UnsupportedMediaType``)
whose message is the faultstring the caller sees; Panko's wording is kept
where clients or operators may know it.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import iso8601

from panko_collector import errors, storage
from panko_collector.storage import models

OPERATORS = ("lt", "le", "eq", "ne", "ge", "gt")
#: Panko's names of the trait types a filter may give, in the order its error
#: message lists them.
TRAIT_TYPES = tuple(models.Trait.type_names[dtype] for dtype in (
    models.Trait.INT_TYPE, models.Trait.FLOAT_TYPE, models.Trait.TEXT_TYPE,
    models.Trait.DATETIME_TYPE))
SORT_KEYS = ("message_id", "generated")
SORT_DIRECTIONS = ("asc", "desc")
#: The operator each special field takes, and the one also accepted for it:
#: pankoclient sends ``eq`` for every filter, so ``eq`` on a bound means the bound.
SPECIAL_FIELDS = {
    "event_type": ("eq",),
    "message_id": ("eq",),
    "start_timestamp": ("ge", "eq"),
    "end_timestamp": ("le", "eq"),
}
#: At most this many filters in one request: each one is a condition of the query.
MAX_QUERIES = 100
#: Request bodies of this size or more are refused (413).
MAX_BODY_BYTES = 1 << 20
#: Body content types read as JSON (WSME's list).
JSON_TYPES = ("application/json", "text/javascript", "application/javascript")

_ATTRIBUTES = ("field", "op", "type", "value")
_INDEXED = re.compile(r"q\[(\d{1,6})\]\.(\w+)")
_MAX_PARAMETERS = len(_ATTRIBUTES) * MAX_QUERIES + 16
#: Values quoted in error messages are cut to this many characters.
_SHOWN = 100
_TRUE = ("1", "t", "true", "on", "y", "yes")


@dataclass
class Query:
    """One filter as sent; any attribute may be missing (None)."""

    field: str | None = None
    op: str | None = None
    type: str | None = None
    value: str | None = None


@dataclass
class Arguments:
    """The parameters of one ``GET /v2/events``, not yet validated."""

    queries: list[Query] = field(default_factory=list)
    limit: str | int | None = None
    marker: str | None = None
    sort: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Identity:
    """Who is asking, from the headers keystonemiddleware sets (or a gateway, in noauth)."""

    user_id: str | None
    project_id: str | None
    roles: tuple[str, ...] = ()
    system_scope: str | None = None

    @classmethod
    def from_headers(cls, get: Any) -> Identity:
        """Build from a ``get(name)`` of header values; empty values count as absent.

        Roles are split on commas and stripped (Panko did not strip, so
        ``member, admin`` was not an admin there).
        """
        roles = tuple(r.strip() for r in (get("X-Roles") or "").split(",") if r.strip())
        return cls(get("X-User-Id") or None, get("X-Project-Id") or None, roles,
                   get("OpenStack-System-Scope") or None)

    def policy_credentials(self) -> dict[str, Any]:
        """What oslo.policy checks: roles, user, project and any system scope."""
        creds: dict[str, Any] = {"roles": list(self.roles), "user_id": self.user_id,
                                 "project_id": self.project_id}
        if self.system_scope:
            creds["system_scope"] = self.system_scope
        return creds


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _invalid(attribute: str, value: object, reason: str) -> errors.BadRequest:
    return errors.BadRequest(
        f"Invalid input for field/attribute {attribute}. Value: '{_shown(value)}'. {reason}")


def split_query_string(raw: bytes) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a raw query string, in order.

    Raises ``BadRequest`` when it is not UTF-8 (raw or %-escaped) or has
    more parameters than any valid request needs.
    """
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                         errors="strict", max_num_fields=_MAX_PARAMETERS)
    except UnicodeDecodeError:
        raise errors.BadRequest("The query string is not valid UTF-8: percent-encode "
                                "parameters as UTF-8.") from None
    except ValueError:
        raise errors.BadRequest(f"Too many query parameters: at most {MAX_QUERIES} "
                                "filters are accepted in one request.") from None


def from_query_string(pairs: Sequence[tuple[str, str]]) -> tuple[Arguments, set[str]]:
    """Arguments from query-string pairs, and the names of those given."""
    args = Arguments()
    given: set[str] = set()
    parallel: dict[str, list[str]] = {a: [] for a in _ATTRIBUTES}
    indexed: dict[int, Query] = {}
    for name, value in pairs:
        if name.startswith("q."):
            attribute = name[2:]
            if attribute not in parallel:
                raise errors.BadRequest(f'Unknown argument: "{_shown(name)}"')
            parallel[attribute].append(value)
        elif match := _INDEXED.fullmatch(name):
            index, attribute = int(match[1]), match[2]
            if attribute not in _ATTRIBUTES:
                raise errors.BadRequest(f'Unknown argument: "{_shown(name)}"')
            if index >= MAX_QUERIES:
                raise errors.BadRequest(f"Too many filters: q[{index}] is beyond the "
                                        f"{MAX_QUERIES} filters accepted in one request.")
            setattr(indexed.setdefault(index, Query()), attribute, value)
        elif name == "limit":
            args.limit = value
        elif name == "marker":
            args.marker = value
        elif name == "sort":
            args.sort.append(value)
        else:
            raise errors.BadRequest(f'Unknown argument: "{_shown(name)}"')
        given.add(name if name in ("limit", "marker", "sort") else "q")
    if indexed and any(parallel.values()):
        raise errors.BadRequest("Parameter q was given several times: use either "
                                "q.field=... or q[N].field=..., not both.")
    # Matched by position; a filter missing an attribute gets None for it.
    count = max(len(v) for v in parallel.values())
    for i in range(count):
        args.queries.append(Query(**{a: (v[i] if i < len(v) else None)
                                     for a, v in parallel.items()}))
    args.queries.extend(indexed[i] for i in sorted(indexed))
    return args, given


def parse_body(data: bytes, content_type: str | None) -> dict[str, Any] | None:
    """The JSON object of a GET body, or None when there is no body.

    Raises ``UnsupportedMediaType`` for a body that is not declared JSON,
    ``BadRequest`` for one that is not a JSON object.
    """
    if not data.strip():
        return None
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype not in JSON_TYPES:
        raise errors.UnsupportedMediaType(
            f"Unknown mimetype: {_shown(mimetype) or '(none)'}: send the body as "
            "application/json.")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise errors.BadRequest("Request is not in valid JSON format") from None
    if not isinstance(body, dict):
        raise errors.BadRequest("Request must be a JSON dict")
    return body


def _text_or_none(attribute: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _invalid(attribute, value, f"Wrong type. Expected '{str}', got '{type(value)}'")


def from_body(body: dict[str, Any]) -> Arguments:
    """Arguments from a JSON body (keys ``q``, ``limit``, ``marker``, ``sort``)."""
    args = Arguments()
    for key, value in body.items():
        if key == "q":
            if not isinstance(value, list):
                raise _invalid("q", value, "Wrong type. Expected a list of filters.")
            if len(value) > MAX_QUERIES:
                raise errors.BadRequest(f"Too many filters: {len(value)}; at most "
                                        f"{MAX_QUERIES} are accepted in one request.")
            for item in value:
                if not isinstance(item, dict):
                    raise _invalid("q", item, "Wrong type. Expected a filter object "
                                   '{"field": ..., "op": ..., "value": ...}.')
                unknown = set(item) - set(_ATTRIBUTES)
                if unknown:
                    raise errors.BadRequest(
                        f'Unknown attribute for argument q: "{_shown(sorted(unknown)[0])}"')
                args.queries.append(Query(**{a: _text_or_none(a, item.get(a))
                                             for a in _ATTRIBUTES}))
        elif key == "limit":
            if isinstance(value, bool) or not isinstance(value, int | str | None):
                raise _invalid("limit", value, "unable to convert to int.")
            args.limit = value
        elif key == "marker":
            args.marker = _text_or_none("marker", value)
        elif key == "sort":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
                raise _invalid("sort", value, "Wrong type. Expected a list of strings.")
            args.sort = list(items)
        else:
            raise errors.BadRequest(f'Unknown argument: "{_shown(key)}"')
    return args


def collect(pairs: Sequence[tuple[str, str]], body: dict[str, Any] | None) -> Arguments:
    """The arguments of a request from its query string and body together.

    A parameter may come from one or the other, not both.
    """
    args, given = from_query_string(pairs)
    if body is None:
        return args
    for key in body:
        if key in given:
            raise errors.BadRequest(f"Parameter {_shown(key)} was given several times")
    from_json = from_body(body)
    if "q" in body:
        args.queries = from_json.queries
    if "limit" in body:
        args.limit = from_json.limit
    if "marker" in body:
        args.marker = from_json.marker
    if "sort" in body:
        args.sort = from_json.sort
    return args


def parse_timestamp(text: str) -> datetime.datetime:
    """An ISO 8601 date/time as naive UTC (no offset means UTC); BadRequest if not one."""
    try:
        return models.to_naive_utc(iso8601.parse_date(text, default_timezone=datetime.UTC))
    except (iso8601.ParseError, ValueError, OverflowError):
        raise errors.BadRequest(
            f"Unable to parse date string '{_shown(text)}': use ISO 8601, e.g. "
            "2021-03-01T12:00:00Z") from None


def _convert(value: str, data_type: str) -> Any:
    """A trait filter's value in its type; ``BadRequest`` when it is not one."""
    try:
        if data_type == "integer":
            number = int(value)
            if not models.INT_MIN <= number <= models.INT_MAX:
                raise ValueError(value)
            return number
        if data_type == "float":
            real = float(value)
            if not math.isfinite(real):
                raise ValueError(value)
            return real
        if data_type == "datetime":
            return parse_timestamp(value)
    except (ValueError, errors.BadRequest):
        raise errors.BadRequest(f"Unable to convert the value {_shown(value)} to the "
                                f"expected data type {data_type}.") from None
    return value


def event_filter(queries: Sequence[Query], identity: Identity,
                 is_admin: bool) -> storage.EventFilter:
    """The storage filter of ``queries``, scoped to the caller as Panko scopes it.

    A non-admin sees only events whose ``project_id`` and ``user_id`` traits
    are theirs; an admin sees their project's events and those without a
    project, or everything with ``all_tenants`` (or a system-scoped token).
    """
    if len(queries) > MAX_QUERIES:
        raise errors.BadRequest(f"Too many filters: {len(queries)}; at most {MAX_QUERIES} "
                                "are accepted in one request.")
    traits: list[storage.TraitFilter] = []
    admin_proj: str | None = None
    if is_admin:
        admin_proj = None if identity.system_scope == "all" else identity.project_id
    else:
        traits += [{"key": "project_id", "op": "eq", "string": identity.project_id or ""},
                   {"key": "user_id", "op": "eq", "string": identity.user_id or ""}]
    special: dict[str, str | None] = dict.fromkeys(SPECIAL_FIELDS)
    for number, query in enumerate(queries, 1):
        op = query.op or "eq"
        if op not in OPERATORS:
            raise errors.BadRequest(f"Operator {_shown(op)} is not supported. The supported "
                                    f"operators are: {OPERATORS}")
        if not query.field:
            raise errors.BadRequest(
                f"Invalid input for field/attribute field. Value: 'None'. Mandatory field "
                f"missing: filter {number} has no q.field.")
        if query.value is None:
            raise errors.BadRequest(
                f"Invalid input for field/attribute value. Value: 'None'. Mandatory field "
                f"missing: filter {number} ({_shown(query.field)}) has no q.value.")
        if query.field in SPECIAL_FIELDS:
            allowed = SPECIAL_FIELDS[query.field]
            if op not in allowed:
                raise errors.BadRequest(f"Operator {op} is not supported. Only `{allowed[0]}' "
                                        f"operator is available for field {query.field}")
            special[query.field] = query.value  # the last one wins, as in Panko
        elif query.field == "all_tenants" and is_admin:
            if query.value.strip().lower() in _TRUE:
                admin_proj = None
        else:
            data_type = query.type or "string"
            if data_type not in TRAIT_TYPES:
                raise errors.BadRequest(
                    f"The data type {_shown(data_type)} is not supported. The supported "
                    f"data type list is: {list(TRAIT_TYPES)}")
            trait: dict[str, Any] = {"key": query.field, "op": op,
                                     data_type: _convert(query.value, data_type)}
            traits.append(trait)  # type: ignore[arg-type]
    start, end = special["start_timestamp"], special["end_timestamp"]
    return storage.EventFilter(
        start_timestamp=parse_timestamp(start) if start else None,
        end_timestamp=parse_timestamp(end) if end else None,
        event_type=special["event_type"] or None,
        message_id=special["message_id"] or None,
        traits_filter=traits,
        admin_proj=admin_proj,
    )


_SORT_HELP = ("the sort parameter should be a pair of sort key and sort dir combined with "
              "':', or only sort key specified and sort dir will be default 'asc', ")


def pagination(args: Arguments, default_limit: int, max_limit: int) -> storage.Pagination:
    """Limit, marker and sort of a request; ``message_id`` ends every sort (in storage).

    A missing or zero limit is ``default_limit``; any limit is clamped to
    ``max_limit``.
    """
    limit = default_limit
    if args.limit is not None and args.limit != "":
        try:
            limit = int(args.limit)
        except ValueError as exc:
            raise _invalid("limit", args.limit,
                           f"unable to convert to int. Error: {_shown(exc)}") from None
        if limit < 0:
            raise _invalid("limit", args.limit, "the limit should be a positive integer.")
        limit = limit or default_limit
    sort: list[tuple[str, str]] = []
    for item in args.sort:
        key, _, direction = item.partition(":")
        direction = direction or "asc"
        if key not in SORT_KEYS:
            raise _invalid("sort", item, f"{_SORT_HELP}the supported sort keys are: "
                           f"{SORT_KEYS}")
        if direction not in SORT_DIRECTIONS:
            raise _invalid("sort direction", item, f"{_SORT_HELP}the supported sort "
                           f"directions are: {SORT_DIRECTIONS}")
        if key not in (k for k, _ in sort):
            sort.append((key, direction))
    page: storage.Pagination = {"limit": min(limit, max_limit), "marker": args.marker or None}
    if sort:
        page["sort"] = sort
    return page
