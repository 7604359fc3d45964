"""Every private name of a library that panko-collector touches, one module per library.

A library may rename or drop its private names in any release, so each
module here lists the ones it uses (``PRIVATE_NAMES``, each with a check
that it is still there) and installs its hooks so that a missing name is
noticed, never silently ignored:

- ``amqp_hooks`` (py-amqp): the socket read-ahead (speed only: without it a
  WARNING, and the worker reads as py-amqp does) and the channel's body
  decoding (safety);
- ``kombu_hooks``: kombu's message class, which would decompress bodies (safety);
- ``jsonpath_hooks`` (jsonpath-ng): parse-tree classes the field paths are
  compiled from (without them jsonpath-ng evaluates those paths itself);
- ``prometheus_hooks`` (prometheus-client): the multiprocess value class;
- ``cotyledon_hooks``: the address cotyledon would report readiness to.

A hook that guards safety fails closed: ``check_at_start`` raises
``LibraryIncompatible`` and the daemon does not start. The pyproject.toml
upper bounds on these libraries keep an untested release out; the unit test
of this package fails when an installed release lacks a listed name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from panko_collector import errors

LOG = logging.getLogger(__name__)

#: A private name, and how to tell whether the installed library still has it.
PrivateNames = Mapping[str, Callable[[], bool]]


def missing(names: PrivateNames) -> list[str]:
    """The names of ``names`` that the installed library lacks."""
    gone = []
    for name, present in names.items():
        try:
            found = present()
        except Exception:  # a renamed module or class: gone as well
            found = False
        if not found:
            gone.append(name)
    return gone


def check_at_start() -> None:
    """In the master, before anything is forked: log a WARNING for each
    optional hook that cannot be installed; raise ``LibraryIncompatible``
    when a hook that guards safety cannot be."""
    from panko_collector.compat import (
        amqp_hooks,
        cotyledon_hooks,
        jsonpath_hooks,
        kombu_hooks,
        prometheus_hooks,
    )

    unsafe = missing(amqp_hooks.SAFETY_NAMES) + missing(kombu_hooks.PRIVATE_NAMES)
    if unsafe:
        raise errors.LibraryIncompatible(
            "refusing to start: the guard that keeps message bodies as they came "
            "(never decompressed, decoded or unpickled) cannot be installed, because "
            f"the installed kombu/py-amqp lack {', '.join(unsafe)}; install the versions "
            "pyproject.toml allows (pip install -c constraints.txt panko-collector)")
    for module, consequence in (
            (amqp_hooks.SPEED_NAMES, "the broker socket is read without read-ahead"),
            (jsonpath_hooks.PRIVATE_NAMES,
             "field paths using them are evaluated by jsonpath-ng itself"),
            (prometheus_hooks.PRIVATE_NAMES,
             "metrics may count one process only if prometheus-client was imported early"),
            (cotyledon_hooks.PRIVATE_NAMES,
             "systemd may be told the daemon is ready before its workers consume")):
        gone = missing(module)
        if gone:
            LOG.warning("private names of a library are gone (%s): %s", ", ".join(gone),
                        consequence)
