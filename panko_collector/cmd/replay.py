"""panko-collector-replay: list the dead letters, or send a selection back.

    panko-collector-replay [--config-file F] --list [--format table|json] [filters]
    panko-collector-replay [--config-file F] [--reason R]... [--event-type GLOB]
                           [--limit N] [--dry-run]

Exit codes: 0 done (everything selected replayed), 1 something selected could
not be replayed or the broker is unreachable, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from panko_collector import __version__, errors, service
from panko_collector.broker import replay
from panko_collector.cmd.events import positive_int
from panko_collector.cmd.expirer import ProgressBar


def build_parser() -> argparse.ArgumentParser:
    """The command line of panko-collector-replay."""
    parser = argparse.ArgumentParser(
        prog="panko-collector-replay",
        description="List the messages in the collector's dead-letter queue, or publish "
        "a selection of them again to the exchange and routing key they first came by.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config-file", action="append", default=[], metavar="FILE",
        help="configuration file naming transport_url and [collector] dead_letter_queue "
        "(repeatable)",
    )
    parser.add_argument("--list", action="store_true",
                        help="count what waits, by reason and event type; consumes nothing")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="output of --list (table)")
    parser.add_argument("--reason", action="append", default=[], metavar="REASON",
                        help="only dead letters of this reason, e.g. too-large (repeatable)")
    parser.add_argument("--event-type", metavar="GLOB",
                        help="only notifications whose event type matches, e.g. 'compute.*'")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="replay at most N messages, the first selected in queue order")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be replayed; publishes and removes nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """List or replay; the exit codes are the module's (0, 1, 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list and (args.limit is not None or args.dry_run):
        parser.error("--list takes no --limit or --dry-run")  # exits 2
    conf = service.prepare_service([arg for f in args.config_file for arg in ("--config-file", f)])
    filtered = bool(args.reason or args.event_type)
    selection = (replay.Selection(frozenset(args.reason), args.event_type)
                 if filtered or not args.list else None)
    bar: ProgressBar | None = None

    def on_start(total: int) -> None:
        nonlocal bar
        if sys.stderr.isatty() and total:
            bar = ProgressBar(total, sys.stderr, unit="messages")

    shown, looked_at = 0.0, 0

    def progress(done: int) -> None:
        nonlocal shown, looked_at
        looked_at = done
        # A terminal write per message would cost more than the message.
        if bar is not None and time.monotonic() - shown >= 0.2:
            shown = time.monotonic()
            bar(done)

    try:
        report = replay.run(conf, selection, limit=args.limit,
                            dry_run=args.dry_run or args.list,
                            on_start=on_start, progress=progress)
    except errors.PankoCollectorError as exc:
        print(f"panko-collector-replay: {exc}; every message not replayed is still in "
              "the dead-letter queue", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar(looked_at)
            bar.close()
    if args.list:
        if args.format == "json":
            print(json.dumps(report.inventory.as_json(report.queue), indent=2))
        else:
            print(replay.render_inventory(report))
        return 0
    if args.dry_run and report.selected:
        print(replay.render_inventory(report))
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
