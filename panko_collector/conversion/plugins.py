"""Trait plugins of the event definitions format: ``split``, ``bitfield``,
``timedelta`` and ``map``, with Ceilometer's names, parameters and results.

A plugin is built once per trait from the ``parameters`` of its definition
(bad parameters raise :class:`PluginError`, which the definitions loader
reports with the file, line and trait). It is then called with the
``(path, value)`` pairs of the trait's non-null matches and returns candidate
values; the first non-null one is the trait's value. A plugin that cannot
compute returns ``[None]`` (no trait); should a call raise, the converter
drops that one trait, as for a value that does not fit its type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from panko_collector.conversion.decoder import parse_timestamp

LOG = logging.getLogger(__name__)

#: What a plugin is called with: the dotted path and value of each match.
PluginMatches = list[tuple[str, Any]]


class PluginError(Exception):
    """A plugin's parameters are invalid; the definition naming them is refused."""


class SplitPlugin:
    """``split``: a segment of the string form of each value."""

    def __init__(self, separator: Any = ".", segment: Any = 0, max_split: Any = None) -> None:
        if not isinstance(separator, str) or not separator:
            raise PluginError(f"split: separator must be a non-empty string, not {separator!r}")
        if not isinstance(segment, int):
            raise PluginError(f"split: segment must be an integer, not {segment!r}")
        if max_split is not None and not isinstance(max_split, int):
            raise PluginError(f"split: max_split must be an integer, not {max_split!r}")
        self.separator = separator
        self.segment = segment
        self.max_split = -1 if max_split is None else max_split

    def __call__(self, matches: PluginMatches) -> list[Any]:
        out: list[Any] = []
        for _, value in matches:
            parts = str(value).split(self.separator, self.max_split)
            out.append(parts[self.segment] if -len(parts) <= self.segment < len(parts) else None)
        return out


class BitfieldPlugin:
    """``bitfield``: set bit N when the path given with it matched (a value)."""

    def __init__(self, initial_bitfield: Any = 0, flags: Any = None) -> None:
        if not isinstance(initial_bitfield, int):
            raise PluginError(f"bitfield: initial_bitfield must be an integer, "
                            f"not {initial_bitfield!r}")
        self.initial = initial_bitfield
        self.flags: list[tuple[str, int, bool, Any]] = []
        for flag in flags or []:
            if not isinstance(flag, dict) or "path" not in flag or "bit" not in flag:
                raise PluginError(f"bitfield: each flag needs 'path' and 'bit': {flag!r}")
            try:
                bit = int(flag["bit"])
            except (TypeError, ValueError):
                raise PluginError(f"bitfield: bit must be an integer: {flag!r}") from None
            if bit < 0:
                raise PluginError(f"bitfield: bit must not be negative: {flag!r}")
            self.flags.append((str(flag["path"]), 1 << bit, "value" in flag, flag.get("value")))

    def __call__(self, matches: PluginMatches) -> list[Any]:
        found = dict(matches)
        bitfield = self.initial
        for path, bit, has_value, value in self.flags:
            if path in found and (not has_value or found[path] == value):
                bitfield |= bit
        return [bitfield]


class TimedeltaPlugin:
    """``timedelta``: seconds between the two datetimes the fields give."""

    def __call__(self, matches: PluginMatches) -> list[Any]:
        if len(matches) != 2:
            LOG.warning("timedelta needs exactly two timestamps, got %d", len(matches))
            return [None]
        start, end = (parse_timestamp(value) for _, value in matches)
        if start is None or end is None:
            LOG.warning("timedelta: %s and %s must both be datetimes",
                        matches[0][0], matches[1][0])
            return [None]
        return [abs((end - start).total_seconds())]


class MapPlugin:
    """``map``: replace each value by its entry in ``values`` (or ``default``)."""

    def __init__(self, values: Any = None, default: Any = None,
                 case_sensitive: Any = True) -> None:
        if not values or not isinstance(values, dict):
            raise PluginError("map: 'values' must be a non-empty mapping")
        self.case_sensitive = bool(case_sensitive)
        self.values = values if self.case_sensitive else {
            (k.casefold() if isinstance(k, str) else k): v for k, v in values.items()
        }
        self.default = default

    def __call__(self, matches: PluginMatches) -> list[Any]:
        out = []
        for _, value in matches:
            key = value.casefold() if not self.case_sensitive and isinstance(value, str) else value
            try:
                out.append(self.values[key])
            except (KeyError, TypeError):  # TypeError: a list or object is no key
                out.append(self.default)
        return out


PLUGINS: dict[str, Callable[..., Callable[[PluginMatches], list[Any]]]] = {
    "split": SplitPlugin,
    "bitfield": BitfieldPlugin,
    "timedelta": TimedeltaPlugin,
    "map": MapPlugin,
}
