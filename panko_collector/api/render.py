"""Panko's JSON for events, traits and errors (pure functions).

Trait values are always strings (pankoclient joins them), datetimes are
naive UTC in ``isoformat()`` form without an offset, as Panko wrote them.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from panko_collector.storage import models

CAPABILITIES = {
    "api": {"events:query:simple": True},
    "event_storage": {"storage:production_ready": True},
}


def dumps(body: Any) -> str:
    """The response text: ASCII JSON (non-ASCII escaped), as Panko sent it."""
    return json.dumps(body)


def type_name(dtype: int) -> str:
    return models.Trait.type_names.get(dtype, "none")


def trait_value(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


def trait(t: models.Trait) -> dict[str, str]:
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
