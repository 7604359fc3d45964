"""panko-collector-events: read the stored event history.

    panko-collector-events [--config-file F] [--format table|json] list [filters]
    panko-collector-events show MESSAGE_ID
    panko-collector-events types
    panko-collector-events traits EVENT_TYPE [--name N]

``--format`` is accepted before or after the command.

Exit codes: 0 done, 1 not found or a storage error, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from panko_collector import __version__, errors, opts, service, storage
from panko_collector.storage import models

#: ``--trait`` types (the definitions format's names) and the EventFilter
#: key each one fills (Panko's name of the type).
TRAIT_TYPES = {
    name: models.Trait.type_names[dtype]
    for dtype, name in models.Trait.definition_names.items()
    if dtype != models.Trait.NONE_TYPE
}
#: The type names the command prints: the definitions format's.
DTYPE_NAMES = models.Trait.definition_names
OPERATORS = {"<=": "le", ">=": "ge", "!=": "ne", "==": "eq", "=": "eq", "<": "lt", ">": "gt"}
_TRAIT_RE = re.compile(
    r"^(?P<key>[^:<>=!]+)(?::(?P<type>\w+))?(?P<op><=|>=|!=|==|=|<|>)(?P<value>.*)$"
)


def utc_datetime(text: str) -> datetime.datetime:
    """An ISO 8601 date or time as naive UTC (a time without zone is UTC)."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date/time: {text!r}") from None
    return models.to_naive_utc(value)


def trait_condition(text: str) -> storage.TraitFilter:
    """Parse ``KEY[:TYPE]OPVALUE``, e.g. ``state=active`` or ``memory_mb:int>=512``."""
    match = _TRAIT_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"bad trait condition {text!r}: expected KEY[:TYPE]OPVALUE with OP one of "
            "= != < <= > >= and TYPE one of " + ", ".join(TRAIT_TYPES)
        )
    dtype = match["type"] or "text"
    if dtype not in TRAIT_TYPES:
        raise argparse.ArgumentTypeError(
            f"unknown trait type {dtype!r} in {text!r}: use one of {', '.join(TRAIT_TYPES)}"
        )
    raw = match["value"]
    parse: dict[str, Callable[[str], Any]] = {
        "text": str, "int": int, "float": float, "datetime": utc_datetime
    }
    try:
        value = parse[dtype](raw)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a valid {dtype} in {text!r}") from None
    condition: dict[str, Any] = {"key": match["key"], "op": OPERATORS[match["op"]]}
    condition[TRAIT_TYPES[dtype]] = value
    return condition  # type: ignore[return-value]


def sort_key(text: str) -> tuple[str, str]:
    """Parse ``KEY[:asc|desc]`` with KEY ``generated`` or ``message_id``."""
    key, _, direction = text.partition(":")
    direction = direction or "asc"
    if key not in ("generated", "message_id") or direction not in ("asc", "desc"):
        raise argparse.ArgumentTypeError(
            f"bad sort {text!r}: use generated or message_id, optionally :asc or :desc"
        )
    return key, direction


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of panko-collector-events and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="panko-collector-events", description="Query the stored event history."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config-file", action="append", default=[], metavar="FILE",
        help="configuration file naming [database] connection (repeatable)",
    )
    formats = ("table", "json")
    parser.add_argument("--format", choices=formats, default="table")
    # Also accepted after the command; there it has no default of its own,
    # which would hide one given before the command.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--format", choices=formats, default=argparse.SUPPRESS,
                       help="table (the default) or json")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lst = sub.add_parser("list", parents=[after], help="events matching filters, oldest first")
    lst.add_argument("--event-type")
    lst.add_argument("--start", type=utc_datetime, help="generated at or after (ISO 8601, UTC)")
    lst.add_argument("--end", type=utc_datetime, help="generated at or before (ISO 8601, UTC)")
    lst.add_argument(
        "--trait", type=trait_condition, action="append", default=[],
        metavar="KEY[:TYPE]OPVALUE",
        help="trait condition, e.g. state=active or memory_mb:int>=512 (repeatable, ANDed)",
    )
    lst.add_argument("--project", help="only events visible to this project")
    lst.add_argument("--limit", type=positive_int, default=100, help="at most this many (100)")
    lst.add_argument("--marker", help="continue after the event with this message_id")
    lst.add_argument(
        "--sort", type=sort_key, action="append", metavar="KEY[:asc|desc]",
        help="generated or message_id (repeatable; default generated:asc, message_id:asc)",
    )

    show = sub.add_parser("show", parents=[after], help="one event with all its traits")
    show.add_argument("message_id")
    sub.add_parser("types", parents=[after], help="the stored event types")
    traits = sub.add_parser("traits", parents=[after], help="the traits stored for an event type")
    traits.add_argument("event_type")
    traits.add_argument("--name", help="only traits of this name")
    return parser


def render_value(value: Any) -> Any:
    """A trait value as the commands print it: datetimes in ISO 8601."""
    return value.isoformat() if isinstance(value, datetime.datetime) else value


def event_json(event: models.Event) -> dict[str, Any]:
    """An event as the JSON output shows it: ISO datetimes, definitions type names."""
    return {
        "message_id": event.message_id,
        "event_type": event.event_type,
        "generated": event.generated.isoformat(),
        "traits": [
            {"name": t.name, "type": DTYPE_NAMES[t.dtype], "value": render_value(t.value)}
            for t in event.traits
        ],
        "raw": event.raw,
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An aligned plain-text table; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [[str(render_value(c)) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace, conn: storage.Connection) -> tuple[int, str]:
    """Carry out one command; return the exit code and what to print."""
    as_json = args.format == "json"
    if args.command == "list":
        event_filter = storage.EventFilter(
            start_timestamp=args.start, end_timestamp=args.end, event_type=args.event_type,
            traits_filter=args.trait or None, admin_proj=args.project,
        )
        pagination: storage.Pagination = {"limit": args.limit, "marker": args.marker}
        if args.sort:
            pagination["sort"] = args.sort
        events = list(conn.get_events(event_filter, pagination))
        if as_json:
            return 0, json.dumps([event_json(e) for e in events], indent=2)
        return 0, table(
            ("GENERATED", "EVENT_TYPE", "MESSAGE_ID", "TRAITS"),
            ((e.generated, e.event_type, e.message_id, len(e.traits)) for e in events),
        )
    if args.command == "show":
        found = list(conn.get_events(storage.EventFilter(message_id=args.message_id)))
        if not found:
            return 1, f"no event with message_id {args.message_id!r}"
        event = found[0]
        if as_json:
            return 0, json.dumps(event_json(event), indent=2)
        head = table(
            ("MESSAGE_ID", "EVENT_TYPE", "GENERATED"),
            [(event.message_id, event.event_type, event.generated)],
        )
        body = table(
            ("TRAIT", "TYPE", "VALUE"),
            ((t.name, DTYPE_NAMES[t.dtype], t.value) for t in event.traits),
        )
        return 0, f"{head}\n\n{body}"
    if args.command == "types":
        types = list(conn.get_event_types())
        return 0, json.dumps(types, indent=2) if as_json else "\n".join(types)
    # traits
    traits = [t for t in conn.get_traits(args.event_type, args.name)]
    if as_json:
        return 0, json.dumps(
            [{"name": t.name, "type": DTYPE_NAMES[t.dtype], "value": render_value(t.value)}
             for t in traits],
            indent=2,
        )
    return 0, table(
        ("TRAIT", "TYPE", "VALUE"), ((t.name, DTYPE_NAMES[t.dtype], t.value) for t in traits)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 done, 1 not found or a storage error, 2 bad arguments."""
    args = build_parser().parse_args(argv)
    conf = service.prepare_service([arg for f in args.config_file for arg in ("--config-file", f)],
                                   groups=opts.storage_groups())
    try:
        conn = storage.get_connection(conf.database.connection, conf)
        code, text = run(args, conn)
    except errors.PankoCollectorError as exc:
        print(f"panko-collector-events: {exc}", file=sys.stderr)
        return 1
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
