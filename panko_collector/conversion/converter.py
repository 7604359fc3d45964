"""Notifications to events, by the event definitions. Pure: no I/O.

Semantics are Ceilometer's (the last matching definition wins; without
``drop_unmatched_notifications`` an implicit catch-all gives every other
notification the default traits), with one deliberate difference: a trait
whose value does not fit its type (an ``int`` field holding ``"abc"``, a
malformed date) costs only that trait, with a warning and a callback,
where Ceilometer drops the whole notification.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import reprlib
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg

from panko_collector import package_data
from panko_collector.conversion.decoder import Notification
from panko_collector.conversion.definitions import (
    EventDefinition,
    catchall_definition,
    definitions_from_text,
    read_definitions,
)
from panko_collector.errors import DefinitionsError
from panko_collector.storage import models

LOG = logging.getLogger(__name__)

DEFAULT_DEFINITIONS = "event_definitions.yaml"

PACKAGED_DEFINITIONS = str(package_data.default_definitions())

OPTS = [
    cfg.StrOpt("definitions_cfg_file",
               default=DEFAULT_DEFINITIONS,
               help="The event definitions file (Ceilometer's event_definitions.yaml "
                    "format). A relative path is looked up beside the configuration "
                    "files, then in the working directory; when the default name is "
                    "found nowhere, the file shipped with panko-collector is used."),
    cfg.BoolOpt("drop_unmatched_notifications",
                default=False,
                help="Drop notifications that no event definition matches. Otherwise "
                     "they are stored with the default traits only (service, "
                     "request_id, project_id, user_id, tenant_id)."),
    cfg.MultiStrOpt("store_raw",
                    default=[],
                    help="Priorities (info, error, warn, ...) whose whole notification "
                         "is kept in the event's raw field; other events get {}. "
                         "Repeat the option or separate priorities with commas; "
                         "* keeps every notification."),
]

#: Signature of the trait error callback: (event_type, trait, value, error).
TraitErrorCallback = Callable[[str, str, Any, Exception], None]

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 200

_CACHE_LIMIT = 4096
_NO_MATCH = object()


def resolve_definitions_file(conf: cfg.ConfigOpts) -> str:
    """The definitions file that ``[event] definitions_cfg_file`` names.

    Raises :class:`DefinitionsError` when it names a file that does not exist.
    """
    name: str = conf.event.definitions_cfg_file
    if os.path.isabs(name):
        return name
    found = conf.find_file(name)
    if found:
        return str(found)
    if os.path.exists(name):
        return os.path.abspath(name)
    if name == DEFAULT_DEFINITIONS:
        return PACKAGED_DEFINITIONS
    raise DefinitionsError(f"{name}: event definitions file not found (looked beside the "
                           f"configuration files and in {os.getcwd()})")


class Converter:
    """Turns a :class:`Notification` into a :class:`models.Event`, or None.

    Failure modes: :meth:`convert` never raises for any notification. An
    unmatched notification gives None when ``drop_unmatched`` is set. A
    trait that cannot be extracted or converted is left out, logged as a
    WARNING naming event type, trait and value, and reported to
    ``on_trait_error(event_type, trait, value, exception)``.
    """

    def __init__(self, definitions: Sequence[EventDefinition], *,
                 drop_unmatched: bool = False, store_raw: Sequence[str] = (),
                 on_trait_error: TraitErrorCallback | None = None) -> None:
        # The last matching definition wins: search them from the end.
        self.definitions = list(reversed(definitions))
        if not drop_unmatched and not any(d.is_catchall for d in self.definitions):
            self.definitions.append(catchall_definition())
        self.drop_unmatched = drop_unmatched
        #: Priorities whose events keep the whole notification; "*" is all.
        self.store_raw = frozenset(
            p.strip().lower() for value in store_raw for p in value.split(",") if p.strip())
        self.on_trait_error = on_trait_error
        self._cache: dict[str, Any] = {}
        self._warned: set[tuple[str, str]] = set()
        # One regular expression for the included patterns of every specific
        # (not catch-all) definition. A type it does not match can only be
        # converted by a catch-all: found without trying the many patterns of
        # the shipped definitions one by one, which is what each notification
        # of a flood of never-seen unmatched types would otherwise cost.
        specific = [r for d in self.definitions if not d.is_catchall for r in d.included_regex]
        self._specific = (re.compile("|".join(f"(?:{r})" for r in specific)).match
                          if specific else None)
        self._catchall: Any = next((d for d in self.definitions if d.is_catchall), _NO_MATCH)

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts,
                  on_trait_error: TraitErrorCallback | None = None) -> Converter:
        """Build from the ``[event]`` options; raises DefinitionsError."""
        path = resolve_definitions_file(conf)
        return cls.from_text(conf, read_definitions(path), path, on_trait_error=on_trait_error)

    @classmethod
    def from_text(cls, conf: cfg.ConfigOpts, text: str, path: str,
                  on_trait_error: TraitErrorCallback | None = None) -> Converter:
        """Build from the text of the definitions file ``path`` and the other
        ``[event]`` options; raises DefinitionsError."""
        return cls(definitions_from_text(text, path),
                   drop_unmatched=conf.event.drop_unmatched_notifications,
                   store_raw=conf.event.store_raw, on_trait_error=on_trait_error)

    def definition_for(self, event_type: str) -> EventDefinition | None:
        """The definition that converts ``event_type`` (cached), or None."""
        found = self._cache.get(event_type)
        if found is None:
            if self._specific is None or self._specific(event_type) is None:
                found = self._catchall
            else:
                found = next((d for d in self.definitions if d.match_type(event_type)),
                             _NO_MATCH)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()  # a flood of distinct types must not grow memory
            self._cache[event_type] = found
        return found if isinstance(found, EventDefinition) else None

    def convert(self, notification: Notification,
                received: datetime.datetime | None = None) -> models.Event | None:
        """The event of ``notification``, or None when it is dropped as unmatched.

        ``generated`` is the notification's timestamp, else ``received``,
        else now (naive UTC).
        """
        event_type = notification.event_type
        edef = self.definition_for(event_type)
        if edef is None:
            LOG.debug("Dropping notification %s (message_id %s): no definition matches",
                      event_type, notification.message_id)
            return None
        generated = notification.timestamp or received or models.utcnow()
        body = notification.listener_body(
            generated if notification.raw_timestamp is None else None)
        traits = []
        trait = models.Trait
        for name, dtype, not_text, get, to_value in edef.plan:
            value = None
            try:
                value = get(body)
                if value is None:
                    continue
                # Services send '' for unset values (dates especially).
                if not_text and value == "":
                    continue
                traits.append(trait(name, dtype, to_value(value)))
            except Exception as exc:  # one bad trait must not cost the event
                self._trait_error(event_type, name, value, exc)
        store_raw = self.store_raw
        raw = body if store_raw and (notification.priority in store_raw
                                     or "*" in store_raw) else {}
        return models.Event(notification.message_id, event_type, generated, traits, raw)

    def _trait_error(self, event_type: str, trait: str, value: Any, exc: Exception) -> None:
        # A publisher that sends a bad value sends it in every notification:
        # one WARNING per event type and trait, the rest at DEBUG (and all
        # counted), or a stream of them costs a log line per message. The
        # value is shown bounded (it may be huge or deeply nested), and only
        # formatted for a line that is written: the repeats are the common case.
        key = (event_type, trait)
        if key in self._warned:
            if LOG.isEnabledFor(logging.DEBUG):
                LOG.debug("Event %s: trait %s dropped, value %s does not convert: %s",
                          event_type, trait, _SHORT.repr(value), exc)
        else:
            if len(self._warned) >= _CACHE_LIMIT:
                self._warned.clear()
            self._warned.add(key)
            LOG.warning("Event %s: trait %s dropped, value %s does not convert: %s "
                        "(further failures of this trait are logged at DEBUG)",
                        event_type, trait, _SHORT.repr(value), exc)
        if self.on_trait_error is not None:
            try:
                self.on_trait_error(event_type, trait, value, exc)
            except Exception:  # a broken counter must not cost the event either
                LOG.exception("on_trait_error callback failed")
