"""panko-collector-convert: try event definitions on real notifications.

    panko-collector-convert [--definitions FILE] [--config-file F] [--store-raw] PATH...

Each PATH (``-`` is standard input) holds a JSON object, a JSON array of
notifications, or JSON lines, in any shape the collector accepts. Every
event is printed on stdout as one JSON line, traits sorted by name; a
dropped notification and invalid input are reported on stderr with the
file and position. Exit status: 1 if any input was invalid, 2 if the
definitions cannot be loaded, else 0.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from oslo_config import cfg
from oslo_log import log

from panko_collector import service
from panko_collector.converter import Converter
from panko_collector.decoder import Notification, decode, decode_object
from panko_collector.definitions import load_definitions
from panko_collector.errors import DecodeError, DefinitionsError
from panko_collector.storage import models

CLI_OPTS = [
    cfg.StrOpt("definitions", help="Event definitions file to use instead of "
                                   "[event] definitions_cfg_file."),
    cfg.BoolOpt("store-raw", default=False,
                help="Print the raw notification of every event, whatever "
                     "[event] store_raw says."),
    cfg.MultiStrOpt("paths", positional=True, required=True, metavar="PATH",
                    help="Files of notifications (JSON object, array or lines); - is stdin."),
]

TYPE_NAMES = {
    models.Trait.TEXT_TYPE: "text",
    models.Trait.INT_TYPE: "int",
    models.Trait.FLOAT_TYPE: "float",
    models.Trait.DATETIME_TYPE: "datetime",
}


def event_json(event: models.Event) -> str:
    """One output line: the event with ISO datetimes and traits sorted by name."""
    traits = [
        {"name": t.name, "type": TYPE_NAMES.get(t.dtype, "text"),
         "value": t.value.isoformat() if isinstance(t.value, datetime.datetime) else t.value}
        for t in sorted(event.traits, key=lambda t: t.name)
    ]
    return json.dumps({
        "message_id": event.message_id,
        "event_type": event.event_type,
        "generated": event.generated.isoformat(),
        "traits": traits,
        "raw": event.raw,
    }, default=str)


def _items(name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    """Yield (position, parsed object or bytes of one line) for one input.

    A whole document is an object or an array; anything else is read as
    JSON lines. Lines are handed on as bytes so that the decoder judges
    each one (and reports its own reason).
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        lines = [(n, line) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]
        if len(lines) > 1 and _looks_like_lines(exc, lines[0][1]):
            for number, line in lines:
                yield f"{name}:{number}", line
            return
        where = (f"{name}:{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError)
                 else name)
        yield where, data  # let the decoder give the reason
        return
    if isinstance(doc, list):
        for index, item in enumerate(doc):
            yield f"{name}[{index}]", item
    else:
        yield name, doc


def _looks_like_lines(exc: Exception, first: bytes) -> bool:
    """Several documents one per line, or one broken (pretty-printed) document?"""
    if not isinstance(exc, json.JSONDecodeError) or exc.msg == "Extra data":
        return True
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        return False
    return True


def _read(path: str, stdin: TextIO) -> bytes:
    if path == "-":
        return stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    with open(path, "rb") as f:
        return f.read()


def run(converter: Converter, paths: Sequence[str], out: TextIO, err: TextIO,
        stdin: TextIO | None = None) -> int:
    """Convert every notification of ``paths``; return the exit status."""
    invalid = False
    received = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    for path in paths:
        name = "<stdin>" if path == "-" else path
        try:
            data = _read(path, stdin or sys.stdin)
        except OSError as exc:
            err.write(f"{name}: cannot read: {exc.strerror or exc}\n")
            invalid = True
            continue
        for where, item in _items(name, data):
            try:
                notification: Notification = (decode(item) if isinstance(item, bytes)
                                              else decode_object(item))
            except DecodeError as exc:
                err.write(f"{where}: invalid notification: {exc}\n")
                invalid = True
                continue
            event = converter.convert(notification, received)
            if event is None:
                err.write(f"{where}: dropped {notification.event_type} "
                          f"(message_id {notification.message_id}): no definition matches\n")
                continue
            out.write(event_json(event) + "\n")
    out.flush()
    return 1 if invalid else 0


def main(argv: Sequence[str] | None = None) -> int:
    conf = service.prepare_service(argv, cli_opts=CLI_OPTS)
    # stdout carries the events; log lines (trait warnings) go to stderr.
    conf.set_override("use_stderr", True)
    log.setup(conf, service.PROJECT)
    try:
        if conf.definitions:
            converter = Converter(load_definitions(conf.definitions),
                                  drop_unmatched=conf.event.drop_unmatched_notifications,
                                  store_raw=conf.event.store_raw)
        else:
            converter = Converter.from_conf(conf)
    except DefinitionsError as exc:
        sys.stderr.write(f"panko-collector-convert: {exc}\n")
        return 2
    if conf.store_raw:
        converter.store_raw = frozenset({"*"})
    return run(converter, conf.paths, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
