"""panko-collector-convert: try event definitions on real notifications.

    panko-collector-convert [--definitions FILE] [--config-file F] [--store-raw] [--jobs N] PATH...

Each PATH (``-`` is standard input) holds a JSON object, a JSON array of
notifications, or JSON lines, in any shape the collector accepts. Every
event is printed on stdout as one JSON line, traits sorted by name; a
dropped notification and invalid input are reported on stderr with the
file and position. Exit status: 1 if any input was invalid, 2 if the
definitions cannot be loaded, else 0.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import itertools
import json
import math
import multiprocessing
import operator
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from oslo_config import cfg
from oslo_log import log

from panko_collector import service
from panko_collector.conversion import converter as converter_opts
from panko_collector.conversion.converter import Converter
from panko_collector.conversion.decoder import Notification, decode, decode_object
from panko_collector.conversion.definitions import load_definitions
from panko_collector.errors import DecodeError, DefinitionsError
from panko_collector.storage import models

CLI_OPTS = [
    cfg.StrOpt("definitions", help="Event definitions file to use instead of "
                                   "[event] definitions_cfg_file."),
    cfg.BoolOpt("store-raw", default=False,
                help="Print the raw notification of every event, whatever "
                     "[event] store_raw says."),
    cfg.IntOpt("jobs", default=len(os.sched_getaffinity(0)), min=1,
               sample_default="<number of CPUs>",
               help="Processes that convert a large input (some megabytes) at once."),
    cfg.MultiStrOpt("paths", positional=True, required=True, metavar="PATH",
                    help="Files of notifications (JSON object, array or lines); - is stdin."),
]

#: The type names printed: the definitions format's.
TYPE_NAMES = models.Trait.definition_names


#: json.dumps's own escaping of a string (the C one where Python has it).
_string = json.encoder.encode_basestring_ascii
_by_name = operator.attrgetter("name")


def _value(value: Any) -> str:
    """``value`` as json.dumps(value, default=str) writes it, datetimes in ISO 8601."""
    kind = value.__class__
    if kind is str:
        return _string(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is datetime.datetime:
        return _string(value.isoformat())
    return json.dumps(value, default=str)


@functools.lru_cache(maxsize=4096)
def _trait_head(name: str, dtype: int) -> str:
    """A trait's JSON up to its value: the same few names and types recur."""
    return f'{{"name": {_value(name)}, "type": "{TYPE_NAMES.get(dtype, "text")}", "value": '


def event_json(event: models.Event) -> str:
    """One output line: the event with ISO datetimes and traits sorted by name.

    The same text as ``json.dumps`` of the event as a dict (with
    ``default=str``), written piece by piece: building a dict for every
    trait only to have it encoded would be most of this command's time.
    """
    parts = []
    for t in sorted(event.traits, key=_by_name):
        value = t.value
        parts.append(_trait_head(t.name, t.dtype)
                     + (_string(value) if value.__class__ is str else _value(value)) + "}")
    traits = ", ".join(parts)
    raw = event.raw
    return (f'{{"message_id": {_value(event.message_id)}, '
            f'"event_type": {_value(event.event_type)}, '
            f'"generated": {_value(event.generated)}, "traits": [{traits}], '
            f'"raw": {"{}" if raw.__class__ is dict and not raw else _value(raw)}}}')


def _items(name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    """Yield (position, parsed object or bytes of one line) for one input.

    A whole document is an object or an array; anything else is read as
    JSON lines. Lines are handed on as bytes so that the decoder judges
    each one (and reports its own reason).
    """
    first_end = data.find(b"\n")
    if (first_end > 0 and _NON_SPACE.search(data, first_end) is not None
            and _parses(data[:first_end])):
        # A first line that is a document, and more after it: JSON lines, as
        # the whole file would show by failing after its first line, here
        # found without decoding it all first.
        yield from _lines(name, data)
        return
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        lines = [line for line in data.split(b"\n") if line and not line.isspace()]
        if len(lines) > 1 and _looks_like_lines(exc, lines[0]):
            yield from _lines(name, data)
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


_NON_SPACE = re.compile(rb"\S")


def _parses(text: bytes) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _lines(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    for number, line in enumerate(data.split(b"\n"), 1):
        if line and not line.isspace():
            yield f"{name}:{number}", line


def _looks_like_lines(exc: Exception, first: bytes) -> bool:
    """Several documents one per line, or one broken (pretty-printed) document?"""
    if not isinstance(exc, json.JSONDecodeError) or exc.msg == "Extra data":
        return True
    return _parses(first)


def _read(path: str, stdin: TextIO) -> bytes:
    if path == "-":
        return stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    with open(path, "rb") as f:
        return f.read()


#: Notifications converted as one piece of work (by a worker process, when there are some).
_CHUNK = 1000
#: Inputs smaller than this are converted in this process: forking costs more than it saves.
_PARALLEL_BYTES = 4 * 1024 * 1024

#: What the worker processes convert with: set before they are forked, inherited.
_work: tuple[Converter, datetime.datetime] | None = None


def _convert(converter: Converter, received: datetime.datetime,
             items: Iterable[tuple[str, Any]]) -> tuple[str, str, bool]:
    """Convert ``items``: the events as JSON lines, the reports for stderr,
    and whether any item was invalid."""
    out: list[str] = []
    err: list[str] = []
    invalid = False
    for where, item in items:
        try:
            notification: Notification = (decode(item) if isinstance(item, bytes)
                                          else decode_object(item))
        except DecodeError as exc:
            err.append(f"{where}: invalid notification: {exc}\n")
            invalid = True
            continue
        event = converter.convert(notification, received)
        if event is None:
            err.append(f"{where}: dropped {notification.event_type} "
                       f"(message_id {notification.message_id}): no definition matches\n")
            continue
        out.append(event_json(event))
        out.append("\n")
    return "".join(out), "".join(err), invalid


def _convert_in_worker(items: list[tuple[str, Any]]) -> tuple[str, str, bool]:
    assert _work is not None
    return _convert(*_work, items)


def _chunks(items: Iterator[tuple[str, Any]]) -> Iterator[list[tuple[str, Any]]]:
    while chunk := list(itertools.islice(items, _CHUNK)):
        yield chunk


def run(converter: Converter, paths: Sequence[str], out: TextIO, err: TextIO,
        stdin: TextIO | None = None, jobs: int = 1) -> int:
    """Convert every notification of ``paths``; return the exit status.

    An input of some megabytes is converted by ``jobs`` processes at once
    (when more than one), each a chunk at a time; the output keeps the
    order of the input. Each process logs the first failure of a trait
    as a WARNING, so the same warning may come once per process.
    """
    global _work
    invalid = False
    received = models.utcnow()
    with contextlib.ExitStack() as stack:
        pool: Any = None
        for path in paths:
            name = "<stdin>" if path == "-" else path
            try:
                data = _read(path, stdin or sys.stdin)
            except OSError as exc:
                err.write(f"{name}: cannot read: {exc.strerror or exc}\n")
                invalid = True
                continue
            chunks = _chunks(_items(name, data))
            results: Iterator[tuple[str, str, bool]]
            if jobs > 1 and len(data) >= _PARALLEL_BYTES:
                if pool is None:
                    _work = (converter, received)
                    pool = stack.enter_context(
                        multiprocessing.get_context("fork").Pool(jobs))
                results = pool.imap(_convert_in_worker, chunks)
            else:
                results = (_convert(converter, received, chunk) for chunk in chunks)
            for events, reports, bad in results:
                out.write(events)
                err.write(reports)
                invalid = invalid or bad
    out.flush()
    return 1 if invalid else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Convert the named files; the exit status is :func:`run`'s, or 2 when the
    definitions cannot be loaded.
    """
    # Only the [event] options: the daemon's other modules are not imported,
    # which is most of this command's start-up.
    conf = service.prepare_service(argv, cli_opts=CLI_OPTS,
                                   groups=[("event", converter_opts.OPTS)])
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
    return run(converter, conf.paths, sys.stdout, sys.stderr, jobs=conf.jobs)


if __name__ == "__main__":
    sys.exit(main())
