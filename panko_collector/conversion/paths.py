"""Field paths of event definitions, compiled once for the hot path.

Expressions are parsed with jsonpath-ng's extended parser (so ``split()``,
filters such as ``[?key=image_id]``, quoted keys, indexes and unions are
understood), then compiled:

- a plain chain of keys (``payload.instance_id``, ``$.payload.x``,
  ``payload.'nova_object.data'.uuid``) becomes a tuple of keys looked up
  directly in nested dicts;
- keys, indexes, slices, wildcards, simple filters and ``split()`` become a
  list of small steps evaluated here, with the semantics of jsonpath-rw-ext,
  the library Ceilometer evaluates the same expressions with (a string
  can be indexed, ``[*]`` on an object yields the object, a filter with an
  integer literal compares ``int(value)``);
- anything else (``..``, ``where``, ``sorted``, arithmetic...) is left to
  jsonpath-ng itself.

A match is ``(value, path)``; ``path`` is the dotted path Ceilometer hands
to trait plugins (``payload.a.[0].b``; empty after ``split()``).
"""

from __future__ import annotations

import operator
import re
import warnings
from collections.abc import Callable
from typing import Any

from jsonpath_ng import jsonpath as jp
from jsonpath_ng.ext import filter as jp_filter
from jsonpath_ng.ext import parser as jp_parser
from jsonpath_ng.ext import string as jp_string

from panko_collector.compat import jsonpath_hooks

Match = tuple[Any, tuple[str, ...]]
Step = Callable[[list[Match]], list[Match]]

_PARSER = jp_parser.ExtendedJsonPathParser()

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "!=": operator.ne,
    "==": operator.eq,
    "=": operator.eq,
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


class PathError(ValueError):
    """An expression that cannot be parsed; the message says why."""


class _Unsupported(Exception):
    """Raised while compiling: leave this expression to jsonpath-ng."""


class FieldPath:
    """One compiled expression.

    ``keys`` is the tuple of keys when the expression is a plain chain of
    keys (the fast path), else None. :meth:`find` returns every match.
    """

    __slots__ = ("_fallback", "_steps", "expression", "keys")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        try:
            with warnings.catch_warnings():
                # jsonpath-ng deprecates unquoted words in filters
                # ([?key=image_id]); Ceilometer's files are full of them.
                warnings.simplefilter("ignore", DeprecationWarning)
                tree = _PARSER.parse(expression)
        except Exception as exc:  # the parser raises bare Exception subclasses
            raise PathError(f"invalid path {expression!r}: {exc}") from None
        self.keys: tuple[str, ...] | None = _plain_keys(tree)
        self._steps: list[Step] | None = None
        self._fallback: Any = None
        if self.keys is None:
            try:
                self._steps = _compile(tree, _wildcard_style(expression), top=True)
            except _Unsupported:
                self._fallback = tree

    def find(self, body: Any) -> list[Match]:
        """Every match of the expression in ``body``, in document order."""
        keys = self.keys
        if keys is not None:
            value = body
            for key in keys:
                if isinstance(value, dict) and key in value:
                    value = value[key]
                else:
                    return []
            return [(value, keys)]
        if self._steps is not None:
            matches: list[Match] = [(body, ())]
            for step in self._steps:
                matches = step(matches)
                if not matches:
                    break
            return matches
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            found = self._fallback.find(body)
        return [(m.value, _rw_path(m)) for m in found]

    def first(self, body: Any) -> Any:
        """The first non-null value, or None."""
        keys = self.keys
        if keys is not None:
            value = body
            for key in keys:
                if isinstance(value, dict):
                    value = value.get(key)
                else:
                    return None
            return value
        for value, _ in self.find(body):
            if value is not None:
                return value
        return None


def _plain_keys(tree: Any) -> tuple[str, ...] | None:
    keys: list[str] = []
    node = tree
    while True:
        if isinstance(node, jp.Child):
            right = node.right
            if type(right) is not jp.Fields or len(right.fields) != 1 or right.fields[0] == "*":
                return None
            keys.append(right.fields[0])
            node = node.left
            continue
        if type(node) is jp.Fields and len(node.fields) == 1 and node.fields[0] != "*":
            keys.append(node.fields[0])
        elif type(node) not in (jp.Root, jp.This):
            return None
        break
    if not keys:
        return None
    return tuple(reversed(keys))


def _wildcard_style(expression: str) -> str:
    """jsonpath-rw tells ``.*`` (object members) from ``[*]`` (a slice);
    jsonpath-ng parses both to one Wildcard, so look at the text."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "", expression)
    brackets = "[*]" in text
    dots = re.search(r"(^|\.)\*", text) is not None
    if brackets and dots:
        raise _Unsupported
    return "slice" if brackets else "fields"


def _compile(node: Any, wildcard: str, top: bool = False) -> list[Step]:
    kind = type(node)
    if kind is jp.Child:
        return _compile(node.left, wildcard, top) + _compile(node.right, wildcard)
    if kind is jp.Root:
        if not top:
            raise _Unsupported
        return []
    if kind is jp.This:
        return []
    if kind is jp.Fields:
        return [_fields_step(tuple(node.fields))]
    if kind is jsonpath_hooks.WILDCARD:
        return [_fields_step(("*",)) if wildcard == "fields" else _slice_step(None, None, None)]
    if kind is jp.Index:
        return [_index_step(tuple(node.indices))]
    if kind is jp.Slice:
        return [_slice_step(node.start, node.end, node.step)]
    if kind is jp_filter.Filter:
        return [_filter_step([_expression(e, wildcard) for e in node.expressions])]
    if kind is jp_string.Split:
        return [_split_step(node.chars, node.segment, node.max_split)]
    if kind is jsonpath_hooks.UNION:
        left = _compile(node.left, wildcard, top)
        right = _compile(node.right, wildcard, top)
        return [_union_step(left, right)]
    raise _Unsupported


def _run(steps: list[Step], matches: list[Match]) -> list[Match]:
    for step in steps:
        matches = step(matches)
        if not matches:
            break
    return matches


def _fields_step(names: tuple[str, ...]) -> Step:
    star = "*" in names

    def step(matches: list[Match]) -> list[Match]:
        out: list[Match] = []
        for value, path in matches:
            if not isinstance(value, dict):
                continue
            for name in (tuple(value) if star else names):
                if name in value:
                    out.append((value[name], (*path, str(name))))
        return out

    return step


def _index_step(indices: tuple[int, ...]) -> Step:
    def step(matches: list[Match]) -> list[Match]:
        out: list[Match] = []
        for value, path in matches:
            if not isinstance(value, list | str):
                continue
            for index in indices:
                if -len(value) <= index < len(value):
                    out.append((value[index], (*path, f"[{index}]")))
        return out

    return step


def _slice_step(start: int | None, end: int | None, stride: int | None) -> Step:
    def step(matches: list[Match]) -> list[Match]:
        out: list[Match] = []
        for value, path in matches:
            # jsonpath-rw's rule: an object, integer or string is sliced as
            # a one-element list holding it.
            items = [value] if isinstance(value, dict | int | str) else value
            if not isinstance(items, list):
                continue
            for i in range(len(items))[start:end:stride]:
                out.append((items[i], (*path, f"[{i}]")))
        return out

    return step


def _expression(node: Any, wildcard: str) -> Callable[[Any], bool]:
    if type(node) is not jp_filter.Expression:
        raise _Unsupported
    target = _compile(node.target, wildcard, top=True)
    op = node.op
    literal = node.value
    if op is None:
        return lambda item: bool(_run(target, [(item, ())]))
    compare = _OPERATORS.get(op)
    if compare is None or isinstance(literal, jp.JSONPath):
        raise _Unsupported
    as_int = isinstance(literal, int)  # bools too, as in jsonpath-rw-ext

    def test(item: Any) -> bool:
        for value, _ in _run(target, [(item, ())]):
            if value is None:
                continue
            if as_int:
                try:
                    value = int(value)
                except (ValueError, TypeError, OverflowError):
                    continue
            try:
                if compare(value, literal):
                    return True
            except TypeError:
                continue
        return False

    return test


def _filter_step(tests: list[Callable[[Any], bool]]) -> Step:
    def step(matches: list[Match]) -> list[Match]:
        out: list[Match] = []
        for value, path in matches:
            if not isinstance(value, list):
                continue
            for i, item in enumerate(value):
                if all(test(item) for test in tests):
                    out.append((item, (*path, f"[{i}]")))
        return out

    return step


def _split_step(chars: str, segment: str | int, max_split: int) -> Step:
    whole = segment == "*"
    index = 0 if whole else int(segment)

    def step(matches: list[Match]) -> list[Match]:
        out: list[Match] = []
        for value, _ in matches:
            if not isinstance(value, str):
                continue
            parts = value.split(chars, max_split)
            if whole:
                out.append((parts, ()))
            elif -len(parts) <= index < len(parts):
                # The result has no context in jsonpath-rw-ext: its path is empty.
                out.append((parts[index], ()))
        return out

    return step


def _union_step(left: list[Step], right: list[Step]) -> Step:
    def step(matches: list[Match]) -> list[Match]:
        return _run(left, matches) + _run(right, matches)

    return step


def _rw_path(match: Any) -> tuple[str, ...]:
    parts: list[str] = []
    while match is not None and match.context is not None:
        node = match.path
        if isinstance(node, jp.Fields):
            parts.append(",".join(map(str, node.fields)))
        elif isinstance(node, jp.Index):
            parts.append(f"[{node.indices[0]}]")
        else:
            parts.append(str(node))
        match = match.context
    return tuple(reversed(parts))
