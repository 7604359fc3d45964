"""jsonpath-ng's private names: the parse-tree classes field paths are compiled from.

``paths.py`` compiles a parsed expression into steps of its own, with the
semantics of jsonpath-rw-ext that Ceilometer's definitions were written
for. A union (``a|b``) is the private class ``_Union``; a wildcard is
``Wildcard``. Where the installed jsonpath-ng lacks one, ``UNION`` or
``WILDCARD`` is None, no node is recognised as one, and jsonpath-ng
evaluates those paths itself (a WARNING at start says so).
"""

from __future__ import annotations

from typing import Any

from jsonpath_ng import jsonpath as jp

from panko_collector.compat import PrivateNames

#: The classes, or None where the installed jsonpath-ng has no such class.
UNION: Any = getattr(jp, "_Union", None)
WILDCARD: Any = getattr(jp, "Wildcard", None)

PRIVATE_NAMES: PrivateNames = {
    "jsonpath_ng.jsonpath._Union": lambda: isinstance(getattr(jp, "_Union", None), type),
    "jsonpath_ng.jsonpath.Wildcard": lambda: isinstance(getattr(jp, "Wildcard", None), type),
}
