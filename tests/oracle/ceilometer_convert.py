"""Run Ceilometer's own event converter over a batch of notifications.

This script is the oracle of the differential test
(tests/functional/test_ceilometer_parity.py). It runs inside a separate
virtual environment that holds ``ceilometer`` (installed with ``--no-deps``)
and the few libraries its event converter imports; it must never import
panko_collector, and panko_collector never imports it.

Protocol: one JSON document on stdin::

    {"definitions": "/path/event_definitions.yaml",
     "drop_unmatched_notifications": false,     # optional, Ceilometer's default
     "store_raw": [],                           # optional, Ceilometer's default
     "notifications": [{"priority": "info", "body": {<listener shape>}}, ...]}

and one JSON document on stdout, with one result per notification, in order::

    {"ceilometer": "27.0.0",
     "results": [{"event": {"message_id", "event_type", "generated" (ISO 8601),
                            "traits": [{"name", "type" (1 text .. 4 datetime), "value"}],
                            "raw"}}
                 | {"dropped": "no definition matched"}
                 | {"error": "<exception type>: <message>",
                    "partial": <event as above, from the traits that did convert> | null,
                    "failed_traits": [{"name", "error"}, ...]}, ...]}

An ``error`` result is what Ceilometer's notification agent does with the
same body: its EventEndpoint logs the exception and the notification gives no
event. So that the test can check what panko-collector does instead (keep
the event, drop only the traits that fail), the script then converts each
trait of the matching definition on its own: ``partial`` is the event built
from those that succeed (null when the event itself, e.g. its timestamp,
cannot be built) and ``failed_traits`` names the others.

The script exits non-zero only when the input or the definitions file
cannot be used at all.
"""

from __future__ import annotations

import datetime
import json
import sys
from importlib import metadata
from typing import Any


def _value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def _event(event: Any) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "event_type": event.event_type,
        "generated": _value(event.generated),
        "traits": sorted(
            ({"name": t.name, "type": t.dtype, "value": _value(t.value)} for t in event.traits),
            key=lambda t: t["name"],
        ),
        "raw": event.raw,
    }


def _partial(events_converter: Any, priority: str, body: dict[str, Any]) -> dict[str, Any]:
    """Convert trait by trait what Ceilometer refused as a whole."""
    from ceilometer.event import models
    from oslo_utils import timeutils

    # The same choice of definition as NotificationEventsConverter.to_event.
    edef = next((d for d in events_converter.definitions
                 if d.match_type(body["event_type"])), None)
    if edef is None:
        return {"partial": None, "failed_traits": []}
    traits, failed = [], []
    for name, trait_def in edef.traits.items():
        try:
            trait = trait_def.to_trait(body)
        except Exception as exc:
            failed.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if trait is not None:
            traits.append(trait)
    try:
        when = timeutils.normalize_time(timeutils.parse_isotime(body["metadata"]["timestamp"]))
        raw = body if priority in edef.raw_levels else {}
        event = models.Event(body["metadata"]["message_id"], body["event_type"], when, traits, raw)
    except Exception:
        return {"partial": None, "failed_traits": failed}
    return {"partial": _event(event), "failed_traits": failed}


def main() -> int:
    # Imported here so that --help-like misuse outside the oracle venv fails
    # with a clear ImportError rather than at module import by a test collector.
    from ceilometer import declarative
    from ceilometer.event import converter
    from oslo_config import cfg
    from stevedore import extension

    request = json.load(sys.stdin)

    conf = cfg.ConfigOpts()
    conf.register_opts(converter.OPTS, group="event")
    conf([], project="ceilometer-oracle", default_config_files=[], default_config_dirs=[])
    conf.set_override("drop_unmatched_notifications",
                      bool(request.get("drop_unmatched_notifications", False)), group="event")
    conf.set_override("store_raw", list(request.get("store_raw", [])), group="event")

    # The same plugin lookup as Ceilometer's notification agent (EventEndpoint):
    # the trait plugins registered by the ceilometer distribution's entry points.
    plugins = extension.ExtensionManager(namespace="ceilometer.event.trait_plugin")
    definitions = declarative.load_definitions(conf, [], request["definitions"])
    events_converter = converter.NotificationEventsConverter(conf, definitions, plugins)

    results: list[dict[str, Any]] = []
    for item in request["notifications"]:
        try:
            event = events_converter.to_event(item["priority"], item["body"])
        except Exception as exc:  # the agent logs it and gives no event
            results.append({"error": f"{type(exc).__name__}: {exc}",
                            **_partial(events_converter, item["priority"], item["body"])})
            continue
        if event is None:
            results.append({"dropped": "no definition matched"})
        else:
            results.append({"event": _event(event)})

    json.dump({"ceilometer": metadata.version("ceilometer"), "results": results},
              sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
