"""Panko's JSON for events, traits and errors (pure functions).

Trait values are always strings (pankoclient joins them), datetimes are
naive UTC in ``isoformat()`` form without an offset, as Panko wrote them.

Events are rendered twice over: ``event`` builds the document as Python
objects (the definition of the format), ``events_json``/``event_json``
write the same text straight from the storage models, skipping the
intermediate dicts and the general encoder's walk over them; the unit
tests hold the two to the same bytes.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

from panko_collector.storage import models

CAPABILITIES = {
    "api": {"events:query:simple": True},
    "event_storage": {"storage:production_ready": True},
}


#: ``json.dumps``'s defaults (ASCII, ", " and ": " separators, keys in
#: insertion order) without the check for circular references, which
#: documents built from storage rows cannot have.
_ENCODER = json.JSONEncoder(check_circular=False)


def dumps(body: Any) -> str:
    """The response text: ASCII JSON (non-ASCII escaped), as Panko sent it.

    Raises ``TypeError`` for a value JSON cannot hold; a circular structure
    (never built here) would raise ``RecursionError``.
    """
    return _ENCODER.encode(body)


def type_name(dtype: int) -> str:
    """Panko's name of a trait type code (``none`` for a code it does not know)."""
    return models.Trait.type_names.get(dtype, "none")


def trait_value(value: Any) -> str:
    """A trait value as Panko's API gives it: a string, datetimes in ISO 8601."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


def trait(t: models.Trait) -> dict[str, str]:
    """One trait as Panko's API shows it: name, value (a string) and type name."""
    return {"name": t.name, "value": trait_value(t.value), "type": type_name(t.dtype)}


def event(e: models.Event) -> dict[str, Any]:
    """One event; its traits in the order storage gives them (by name)."""
    return {
        "message_id": e.message_id,
        "event_type": e.event_type,
        "traits": [trait(t) for t in e.traits],
        "generated": e.generated.isoformat(),
        "raw": e.raw,
    }


#: The end of a trait object after its value: ``, "type": "<name>"}``.
_TRAIT_TAILS = {dtype: f', "type": {encode_basestring_ascii(name)}}}'
                for dtype, name in models.Trait.type_names.items()}
_UNKNOWN_TAIL = ', "type": "none"}'


def event_json(e: models.Event) -> str:
    """``dumps(event(e))``, written directly.

    Raises ``TypeError`` when ``raw`` holds a value JSON cannot encode.
    """
    esc = encode_basestring_ascii
    tails = _TRAIT_TAILS
    traits = ", ".join([
        # Text, most values, is kept as it is without a call.
        f'{{"name": {esc(t.name)}, "value": {esc(v if v.__class__ is str else trait_value(v))}'
        f'{tails.get(t.dtype, _UNKNOWN_TAIL)}'
        for t in e.traits for v in (t.value,)])
    raw = e.raw
    # Most events keep no raw notification: {} needs no encoder.
    raw_json = "{}" if raw.__class__ is dict and not raw else _ENCODER.encode(raw)
    return (f'{{"message_id": {esc(e.message_id)}, "event_type": {esc(e.event_type)}, '
            f'"traits": [{traits}], "generated": {esc(e.generated.isoformat())}, '
            f'"raw": {raw_json}}}')


def events_json(events: Iterable[models.Event]) -> str:
    """``dumps([event(e) for e in events])``, written directly (see ``event_json``)."""
    return "[" + ", ".join([event_json(e) for e in events]) + "]"


def trait_description(t: dict[str, Any]) -> dict[str, str]:
    """``{'name', 'data_type'}`` from ``get_trait_types`` as Panko's TraitDescription."""
    return {"type": type_name(t["data_type"]), "name": t["name"]}


def version_document(base_url: str) -> dict[str, Any]:
    """``GET /``: the one API version, its self link under ``base_url``."""
    return {"versions": {"values": [{
        "id": "v2",
        "links": [
            {"href": base_url.rstrip("/") + "/v2", "rel": "self"},
            {"href": "https://docs.openstack.org/", "rel": "describedby", "type": "text/html"},
        ],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.telemetry-v2+json"},
            {"base": "application/xml", "type": "application/vnd.openstack.telemetry-v2+xml"},
        ],
        "status": "stable",
        "updated": "2013-02-13T00:00:00Z",
    }]}}


def error(status: int, message: str) -> dict[str, Any]:
    """Panko's error shape; ``faultcode`` says whose fault it is."""
    return {"error_message": {
        "faultcode": "Client" if status < 500 else "Server",
        "faultstring": message,
        "debuginfo": None,
    }}
