"""Event definitions: Ceilometer's ``event_definitions.yaml`` format, compiled.

The file is a YAML list; each definition has ``event_type`` (a glob or a
list of globs, ``!`` excludes, only exclusions mean "everything else") and
``traits`` (name -> a path string, a list of paths, an integer constant,
or ``{fields, type, plugin}``). The meaning of every part is Ceilometer's,
so that operators can bring their files; see the README.

Loading fails with :class:`~panko_collector.errors.DefinitionsError`
naming the file, the YAML line where known, and the definition.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from panko_collector.conversion.paths import FieldPath, PathError
from panko_collector.conversion.plugins import PLUGINS, PluginError, PluginMatches
from panko_collector.conversion.values import CONVERTERS, TYPES
from panko_collector.errors import DefinitionsError
from panko_collector.storage.models import Trait

LOG = logging.getLogger(__name__)

#: Traits every definition gets unless it defines a trait of the same name.
DEFAULT_TRAITS: dict[str, dict[str, Any]] = {
    "service": {"type": "text", "fields": "publisher_id"},
    "request_id": {"type": "text", "fields": "ctxt.request_id"},
    "project_id": {"type": "text", "fields": ["payload.tenant_id", "ctxt.project_id"]},
    "user_id": {"type": "text", "fields": ["payload.user_id", "ctxt.user_id"]},
    "tenant_id": {"type": "text", "fields": ["payload.tenant_id", "ctxt.project_id"]},
}


class _DefError(Exception):
    """A problem in one definition; load_definitions adds file and line."""

    def __init__(self, message: str, trait: str | None = None) -> None:
        super().__init__(message)
        self.trait = trait


class TraitDefinition:
    """How to get one trait out of a notification's listener body.

    :meth:`extract` returns the raw value (None: no trait) and may raise
    only when a plugin or an unusual path fails; :meth:`convert` raises
    ValueError/TypeError/OverflowError when the value does not fit the
    type. The converter turns both into a dropped trait.
    """

    __slots__ = ("constant", "dtype", "get", "getters", "name", "plugin", "simple", "to_value")

    def __init__(self, name: str, cfg: Any) -> None:
        self.name = name
        self.plugin: Callable[[PluginMatches], list[Any]] | None = None
        type_name: Any = "text"
        if isinstance(cfg, dict):
            if "fields" not in cfg:
                raise _DefError(f"trait {name!r} has no 'fields'", name)
            type_name = cfg.get("type", "text")
            if "plugin" in cfg:
                self.plugin = _make_plugin(name, cfg["plugin"])
            fields = cfg["fields"]
        else:
            fields = cfg  # "name: path" (or a list of paths, or a constant)
        if not isinstance(type_name, str) or type_name.lower() not in TYPES:
            raise _DefError(f"trait {name!r}: unknown type {type_name!r} "
                            f"(expected one of {', '.join(TYPES)})", name)
        self.dtype = TYPES[type_name.lower()]

        if isinstance(fields, list) and len(fields) == 1:
            fields = fields[0]
        self.constant: Any = None
        self.getters: tuple[FieldPath, ...] = ()
        # An integer is a constant value, as in Ceilometer (YAML booleans too).
        if isinstance(fields, int):
            self.constant = fields
        elif isinstance(fields, str):
            self.getters = (_path(name, fields),)
        elif isinstance(fields, list) and fields and all(isinstance(f, str) for f in fields):
            self.getters = tuple(_path(name, f) for f in fields)
        else:
            raise _DefError(f"trait {name!r}: fields must be a path, a list of paths "
                            f"or an integer, not {fields!r}", name)
        #: The key tuples when every path is a plain chain of keys and no plugin.
        self.simple: tuple[tuple[str, ...], ...] | None = None
        if self.plugin is None and all(g.keys is not None for g in self.getters):
            self.simple = tuple(g.keys for g in self.getters if g.keys is not None)
        #: ``extract`` specialised for this trait (the hot path calls it).
        self.get: Callable[[dict[str, Any]], Any] = self._specialise()
        #: ``convert`` specialised for this trait's type.
        self.to_value: Callable[[Any], Any] = CONVERTERS[self.dtype]

    def _specialise(self) -> Callable[[dict[str, Any]], Any]:
        if self.constant is not None:
            constant = self.constant
            return lambda body: constant
        if self.simple is not None and len(self.simple) == 1:
            return _key_getter(self.simple[0])
        if self.simple is not None:
            getters = [_key_getter(keys) for keys in self.simple]

            def first_of(body: dict[str, Any]) -> Any:
                for getter in getters:
                    value = getter(body)
                    if value is not None:
                        return value
                return None

            return first_of
        return self.extract

    def extract(self, body: dict[str, Any]) -> Any:
        """The trait's raw value in ``body`` (None: no trait)."""
        if self.constant is not None:
            return self.constant
        if self.plugin is None:
            for getter in self.getters:
                value = getter.first(body)
                if value is not None:
                    return value
            return None
        matches = [(".".join(path), value)
                   for getter in self.getters
                   for value, path in getter.find(body) if value is not None]
        for value in self.plugin(matches):
            if value is not None:
                return value
        return None

    def convert(self, value: Any) -> Any:
        """The stored form of ``value``; raises when it does not fit the type."""
        return self.to_value(value)


def _key_getter(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """A lookup of nested keys, unrolled for the usual depths."""
    if len(keys) == 1:
        (k1,) = keys
        return lambda body: body.get(k1)
    if len(keys) == 2:
        k1, k2 = keys

        def get2(body: dict[str, Any]) -> Any:
            v = body.get(k1)
            return v.get(k2) if isinstance(v, dict) else None

        return get2
    if len(keys) == 3:
        k1, k2, k3 = keys

        def get3(body: dict[str, Any]) -> Any:
            v = body.get(k1)
            if not isinstance(v, dict):
                return None
            v = v.get(k2)
            return v.get(k3) if isinstance(v, dict) else None

        return get3

    def get_n(body: dict[str, Any]) -> Any:
        value: Any = body
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return get_n


@functools.lru_cache(maxsize=4096)
def _compiled(expression: str) -> FieldPath:
    # A definitions file repeats its paths (Ceilometer's names most of them
    # several times) and parsing one is the slow part of loading the file;
    # a FieldPath is never changed once built, so one serves them all.
    return FieldPath(expression)


def _path(trait: str, expression: str) -> FieldPath:
    try:
        return _compiled(expression)
    except PathError as exc:
        raise _DefError(f"trait {trait!r}: {exc}", trait) from None


def _make_plugin(trait: str, cfg: Any) -> Callable[[PluginMatches], list[Any]]:
    params: Any
    if isinstance(cfg, str):
        name, params = cfg, {}
    elif isinstance(cfg, dict):
        if "name" not in cfg:
            raise _DefError(f"trait {trait!r}: plugin given without a name", trait)
        name, params = cfg["name"], cfg.get("parameters") or {}
    else:
        raise _DefError(f"trait {trait!r}: plugin must be a name or a mapping", trait)
    if name not in PLUGINS:
        raise _DefError(f"trait {trait!r}: unknown plugin {name!r} "
                        f"(expected one of {', '.join(PLUGINS)})", trait)
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise _DefError(f"trait {trait!r}: plugin parameters must be a mapping", trait)
    factory = PLUGINS[name]
    known = set(inspect.signature(factory).parameters)
    unknown = sorted(set(params) - set(known))
    if unknown:
        # Ceilometer's plugins swallow unknown keywords; say so instead.
        LOG.warning("trait %s: plugin %s ignores parameters %s", trait, name, ", ".join(unknown))
    try:
        return factory(**{k: v for k, v in params.items() if k in known})
    except PluginError as exc:
        raise _DefError(f"trait {trait!r}: {exc}", trait) from None


class EventDefinition:
    """Which event types one definition takes, and the traits it extracts."""

    def __init__(self, cfg: Any, index: int = 0) -> None:
        self.index = index
        if not isinstance(cfg, dict):
            raise _DefError("a definition must be a mapping with event_type and traits")
        for key in ("event_type", "traits"):
            if key not in cfg:
                raise _DefError(f"required key {key!r} is missing")
        event_types = cfg["event_type"]
        if isinstance(event_types, str):
            event_types = [event_types]
        if not isinstance(event_types, list) or not all(isinstance(t, str) for t in event_types):
            raise _DefError(f"event_type must be a string or a list of strings, "
                            f"not {event_types!r}")
        self.event_types: list[str] = event_types
        included = [t for t in event_types if not t.startswith("!")]
        excluded = [t[1:] for t in event_types if t.startswith("!")]
        if excluded and not included:
            included = ["*"]
        self.is_catchall = "*" in included and not excluded
        #: The included patterns as regular expressions (fnmatch's): a type
        #: that none of them matches cannot match this definition.
        self.included_regex = [fnmatch.translate(t) for t in included]
        self._included = [re.compile(r).match for r in self.included_regex]
        self._excluded = [re.compile(fnmatch.translate(t)).match for t in excluded]

        traits = cfg["traits"]
        if traits is None:
            traits = {}
        if not isinstance(traits, dict):
            raise _DefError("traits must be a mapping of trait name to definition")
        merged: dict[str, Any] = dict(DEFAULT_TRAITS)
        for name, trait_cfg in traits.items():
            merged[str(name)] = trait_cfg
        self.traits = [TraitDefinition(name, trait_cfg) for name, trait_cfg in merged.items()]
        #: What the converter's loop needs of each trait, without attribute lookups.
        self.plan = tuple((t.name, t.dtype, t.dtype != Trait.TEXT_TYPE, t.get, t.to_value)
                          for t in self.traits)

    def match_type(self, event_type: str) -> bool:
        """Whether ``event_type`` matches an included pattern and no excluded one."""
        return (any(m(event_type) for m in self._included)
                and not any(m(event_type) for m in self._excluded))

    def __repr__(self) -> str:
        return f"<EventDefinition #{self.index} {self.event_types!r}>"


def catchall_definition() -> EventDefinition:
    """The implicit last resort: every type, the default traits only."""
    return EventDefinition({"event_type": "*", "traits": {}}, index=-1)


def parse_definitions(config: Any, source: str = "<definitions>",
                      lines: Sequence[int | None] = ()) -> list[EventDefinition]:
    """Compile an already-loaded definitions list (file order kept)."""
    if not isinstance(config, list):
        raise DefinitionsError(f"{source}: the file must hold a YAML list of definitions, "
                               f"not {type(config).__name__}")
    out = []
    for index, cfg in enumerate(config):
        try:
            out.append(EventDefinition(cfg, index))
        except _DefError as exc:
            where = f" (line {lines[index]})" if index < len(lines) and lines[index] else ""
            types = cfg.get("event_type") if isinstance(cfg, Mapping) else None
            raise DefinitionsError(f"{source}: definition #{index + 1}{where} "
                                   f"event_type={types!r}: {exc}") from None
    return out


#: libyaml's safe loader where PyYAML was built with it: the pure-Python one
#: would be most of the time of loading a definitions file.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_definitions(path: str) -> list[EventDefinition]:
    """Load and compile a definitions file.

    Raises :class:`DefinitionsError` naming the file, the line and the
    definition when the file cannot be read, is not YAML, or a definition
    is invalid (unknown type or plugin, a bad path...).
    """
    return definitions_from_text(read_definitions(path), path)


def read_definitions(path: str) -> str:
    """The text of a definitions file; raises :class:`DefinitionsError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionsError(f"{path}: cannot read the event definitions: {exc}") from None


def definitions_from_text(text: str, path: str) -> list[EventDefinition]:
    """Compile the text of a definitions file; errors name ``path`` as
    :func:`load_definitions` says."""
    try:
        config = yaml.load(text, Loader=_YAML_LOADER)
        node = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionsError(f"{path}: invalid YAML{where}: {problem}") from None
    lines: list[int | None] = []
    if isinstance(node, yaml.SequenceNode):
        lines = [item.start_mark.line + 1 for item in node.value]
    return parse_definitions(config, path, lines)
