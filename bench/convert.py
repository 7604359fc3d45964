"""Notifications per second through decode + convert, beside plain json.loads.

Corpus: the legacy notifications (stacktach-notigen, designate, searchlight,
watcher-legacy-2018) in the listener shape, placeholders left as they are,
converted with Ceilometer's shipped event_definitions.yaml. The corpus is
read from $PANKO_COLLECTOR_DATA or ../shared/data.

    .venv/bin/python bench/convert.py [--seconds N] [--definitions FILE]

With ``--command LINES``, the corpus repeated to at least LINES notifications
is written as a JSON-lines file, and ``panko-collector-convert`` (the one
beside this Python) converts it, its output to /dev/null, as it runs by
default (one process per CPU on such a file) and with ``--jobs 1``, in
turns with in-process decode + convert of the same lines (``--rounds``
each, the best kept): notifications per second, start-up included, and
the ratios of wall-clock and CPU seconds to in-process decode + convert.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panko_collector.conversion.converter import Converter
from panko_collector.conversion.decoder import decode, decode_object
from panko_collector.conversion.definitions import load_definitions
from tests import corpus


def best_rates(works: dict[str, Callable[[], int]], seconds: float) -> dict[str, float]:
    """Items per second of each work (which returns how many it did).

    The works take turns, round after round, so that a busy neighbour on a
    shared machine slows them alike; the best round of each is kept.
    """
    best = dict.fromkeys(works, 0.0)
    deadline = time.perf_counter() + seconds * len(works)
    while time.perf_counter() < deadline:
        for name, work in works.items():
            start = time.perf_counter()
            count = work()
            best[name] = max(best[name], count / (time.perf_counter() - start))
    return best


def command_beside_in_process(bodies: list[bytes], converter: Converter,
                              definitions: str, lines: int, rounds: int) -> None:
    """Time panko-collector-convert on a JSON-lines file against in-process
    decode + convert of the same lines; print both and the ratio."""
    repeat = -(-lines // len(bodies))
    data = bodies * repeat
    received = datetime.datetime(2024, 1, 1)
    exe = Path(sys.executable).with_name("panko-collector-convert")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "notifications.jsonl"
        path.write_bytes(b"\n".join(data) + b"\n")
        # Wall-clock seconds and CPU seconds (user + system) of each turn:
        # on a shared machine the CPU time is the steadier of the two.
        commands = {"panko-collector-convert": [], "panko-collector-convert --jobs 1":
                    ["--jobs", "1"]}
        inf = (float("inf"), float("inf"))
        best = {"in-process decode + convert": inf, **dict.fromkeys(commands, inf)}
        for _ in range(rounds):
            start, cpu = time.perf_counter(), time.process_time()
            for body in data:
                converter.convert(decode(body), received)
            best["in-process decode + convert"] = min(
                best["in-process decode + convert"],
                (time.perf_counter() - start, time.process_time() - cpu))
            for name, options in commands.items():
                start, children = time.perf_counter(), _children_cpu()
                subprocess.run([str(exe), "--definitions", definitions, *options, str(path)],
                               check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                best[name] = min(best[name],
                                 (time.perf_counter() - start, _children_cpu() - children))
    print(f"file: {len(data)} JSON lines, {sum(map(len, data)) + len(data)} bytes; "
          "commands: start-up included, output to /dev/null")
    reference = best["in-process decode + convert"]
    for name, (wall, cpu) in best.items():
        ratio = "" if name not in commands else (
            f"  ratio to in-process: {wall / reference[0]:.2f} wall-clock, "
            f"{cpu / reference[1]:.2f} CPU")
        print(f"{name + ':':34} {len(data) / wall:7,.0f} notifications/s ({wall:.2f} s, "
              f"CPU {cpu:.2f} s){ratio}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--definitions", default=str(corpus.definitions_file()))
    parser.add_argument("--command", type=int, metavar="LINES",
                        help="time panko-collector-convert on a file of this many lines")
    parser.add_argument("--rounds", type=int, default=3, help="turns each with --command")
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
    if args.command:
        command_beside_in_process(bodies, converter, args.definitions, args.command,
                                  args.rounds)
        return

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
    rates = best_rates({"loads": loads_only, "full": decode_and_convert,
                        "convert": convert_only_work()}, args.seconds)
    loads, full, conv = rates["loads"], rates["full"], rates["convert"]
    print(f"json.loads only:         {loads:10,.0f} notifications/s")
    print(f"decode + convert:        {full:10,.0f} notifications/s  "
          f"(ratio to json.loads: {full / loads:.2f})")
    print(f"convert only (decoded):  {conv:10,.0f} notifications/s  "
          f"(ratio to json.loads: {conv / loads:.2f})")


if __name__ == "__main__":
    main()
