"""Imported at start by the interpreter of a daemon a test runs with this
directory on PYTHONPATH: every AMQP method any of its processes sends (the
master and the workers it forks) is appended to the file named by
$PANKO_COLLECTOR_TEST_AMQP_SPY, one JSON line each: pid, [class, method],
and the method's fields (message bodies are not recorded)."""

from __future__ import annotations

import json
import os
from typing import Any

_PATH = os.environ.get("PANKO_COLLECTOR_TEST_AMQP_SPY")


def _install(path: str) -> None:
    from amqp.abstract_channel import AbstractChannel

    _send = AbstractChannel.send_method

    def _recording(self: Any, sig: Any, format: Any = None, args: Any = None,
                   *rest: Any, **kwargs: Any) -> Any:
        line = json.dumps({"pid": os.getpid(), "sig": list(sig), "args": list(args or ())},
                          default=repr)
        # One write per line in append mode: lines of several processes never mix.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        return _send(self, sig, format, args, *rest, **kwargs)

    AbstractChannel.send_method = _recording


if _PATH:
    _install(_PATH)
