"""Notifications per second through decode + convert, beside plain json.loads.

Corpus: the legacy notifications (stacktach-notigen, designate, searchlight,
watcher-legacy-2018) in the listener shape, placeholders left as they are,
converted with Ceilometer's shipped event_definitions.yaml. The corpus is
read from $PANKO_COLLECTOR_DATA or ../shared/data.

    .venv/bin/python bench/convert.py [--seconds N] [--definitions FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panko_collector.converter import Converter
from panko_collector.decoder import decode, decode_object
from panko_collector.definitions import load_definitions
from tests import corpus


def rate(work: Callable[[], int], seconds: float) -> float:
    """Items per second of ``work`` (which returns how many it did), best of rounds."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        count = work()
        elapsed = time.perf_counter() - start
        best = max(best, count / elapsed)
        if time.perf_counter() >= deadline:
            return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--definitions", default=str(corpus.definitions_file()))
    args = parser.parse_args()
    # The placeholders of notigen ([[[[DT_2]]]]) make datetime traits fail:
    # that is part of the work measured, but not worth a log line each.
    logging.basicConfig(level=logging.ERROR)

    received = datetime.datetime(2024, 1, 1)
    bodies = []
    for _, notification in corpus.notifications(corpus.LEGACY_SOURCES):
        listener = decode_object(notification).listener_body(received)
        bodies.append(json.dumps(listener).encode())
    converter = Converter(load_definitions(args.definitions))

    def loads_only() -> int:
        for body in bodies:
            json.loads(body)
        return len(bodies)

    def decode_and_convert() -> int:
        for body in bodies:
            converter.convert(decode(body), received)
        return len(bodies)

    def convert_only_work() -> Callable[[], int]:
        decoded = [decode(body) for body in bodies]

        def work() -> int:
            for notification in decoded:
                converter.convert(notification, received)
            return len(decoded)

        return work

    print(f"corpus: {len(bodies)} legacy notifications, {sum(map(len, bodies))} bytes; "
          f"definitions: {args.definitions}")
    loads = rate(loads_only, args.seconds)
    full = rate(decode_and_convert, args.seconds)
    conv = rate(convert_only_work(), args.seconds)
    print(f"json.loads only:         {loads:10,.0f} notifications/s")
    print(f"decode + convert:        {full:10,.0f} notifications/s  "
          f"(ratio to json.loads: {full / loads:.2f})")
    print(f"convert only (decoded):  {conv:10,.0f} notifications/s")


if __name__ == "__main__":
    main()
