"""Message bodies to notifications: the three shapes OpenStack sends, one result.

Pure code, no I/O. A notification reaches the collector as

- the oslo.messaging v2 wire envelope ``{"oslo.version": "2.0",
  "oslo.message": "<JSON string>"}`` whose inner message is flat;
- that flat message without the envelope (older and third-party publishers):
  ``event_type``, ``publisher_id``, ``priority``, ``payload``, ``message_id``,
  ``timestamp`` and the context spread over ``_context_<key>`` keys;
- the listener shape that oslo.messaging hands to its notification
  endpoints: ``{ctxt, publisher_id, event_type, payload, metadata:
  {message_id, timestamp}}`` (plus ``priority`` when we produce it).

All three decode to the same :class:`Notification`. Anything else raises
:class:`~panko_collector.errors.DecodeError` with a stable ``reason``.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import iso8601

from panko_collector.errors import DecodeError
from panko_collector.storage.models import to_naive_utc

ENVELOPE_VERSION_KEY = "oslo.version"
ENVELOPE_MESSAGE_KEY = "oslo.message"
CONTEXT_PREFIX = "_context_"

#: Namespace of the message ids we derive for messages that carry none.
MESSAGE_ID_NAMESPACE = uuid.UUID("6b0c3f57-4f0e-4a57-9b7e-0c4e0d0c0f6a")

# A JSON escape of a UTF-16 surrogate: the only way valid UTF-8 JSON text can
# still produce a string that no database will store. Checked only when seen.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

# UTC timestamps with at most microseconds: what every OpenStack service sends.
_COMMON_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,6}))?(?:Z|[+-]00:00)?\Z")


def parse_timestamp(value: Any) -> datetime.datetime | None:
    """Parse a timestamp the way OpenStack services write them; naive UTC.

    Accepts ``2012-05-08 20:23:48.028195``, ISO 8601 with ``T`` or a space,
    with or without fraction and zone (a missing zone means UTC: the
    semantics of oslo.utils' ``parse_isotime``). Returns None for anything
    else, including non-strings.
    """
    if not isinstance(value, str):
        return None
    common = _COMMON_TIMESTAMP.match(value)
    if common is not None:
        # The shape oslo.messaging writes: the same result as iso8601 without
        # the cost of its general expression and time-zone objects.
        year, month, day, hour, minute, second, fraction = common.groups()
        try:
            return datetime.datetime(int(year), int(month), int(day), int(hour), int(minute),
                                     int(second), int(fraction.ljust(6, "0")) if fraction else 0)
        except ValueError:
            return None
    if not value[:4].isdigit():
        # iso8601 wants four digits first too: a placeholder or a word fails
        # here without the cost of its regular expression and exception.
        return None
    try:
        return to_naive_utc(iso8601.parse_date(value))
    except (ValueError, TypeError, OverflowError):
        return None


def format_timestamp(value: datetime.datetime) -> str:
    """The string oslo.messaging puts in a message: ``str(utcnow())``."""
    return str(value)


@dataclass(slots=True)
class Notification:
    """One decoded notification, whatever shape it arrived in.

    ``priority`` is lower-cased (``''`` when absent). ``timestamp`` is naive
    UTC, or None when the message has none or it cannot be parsed; the
    caller decides what time to use then. ``raw_timestamp`` keeps the
    string as sent, so that :meth:`listener_body` gives definitions exactly
    what oslo.messaging would.
    """

    message_id: str
    event_type: str
    publisher_id: str | None
    priority: str
    timestamp: datetime.datetime | None
    payload: Any
    context: dict[str, Any]
    raw_timestamp: str | None = field(default=None, compare=True)

    def listener_body(self, timestamp: datetime.datetime | None = None) -> dict[str, Any]:
        """The oslo.messaging listener shape that definitions' paths read.

        ``{ctxt, publisher_id, event_type, payload, priority, metadata:
        {message_id, timestamp}}``. ``metadata.timestamp`` is ``timestamp``
        when given (as oslo.messaging formats it), else the message's own
        string, else None.
        """
        if timestamp is not None:
            stamp: str | None = format_timestamp(timestamp)
        elif self.raw_timestamp is not None:
            stamp = self.raw_timestamp
        elif self.timestamp is not None:
            stamp = format_timestamp(self.timestamp)
        else:
            stamp = None
        return {
            "ctxt": self.context,
            "publisher_id": self.publisher_id,
            "event_type": self.event_type,
            "payload": self.payload,
            "priority": self.priority,
            "metadata": {"message_id": self.message_id, "timestamp": stamp},
        }


def _check_text(text: str) -> None:
    """Reject text that JSON would turn into strings no database can store."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DecodeError("not-utf8", f"unpaired surrogate at position {exc.start}") from None
    if _SURROGATE_ESCAPE.search(text) is not None:
        # Escaped pairs are fine (json joins them); a lone half is not.
        try:
            json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError("not-utf8", "a \\u escape yields an unpaired surrogate") from None
        except (ValueError, RecursionError):
            pass  # reported by the real parse below


#: Deepest nesting of objects and arrays a message may have. Real
#: notifications nest about 6 levels; anything deeper than this is hostile and
#: would make every later recursive walk (jsonpath, json.dumps, repr) a risk.
MAX_DEPTH = 100


_CONTAINERS = (dict, list)


def _depth_exceeds(obj: Any, limit: int) -> bool:
    """True if ``obj`` nests deeper than ``limit`` (``obj`` itself is level 1)."""
    return limit < 1 or (isinstance(obj, _CONTAINERS) and _nests_below(obj, limit - 1))


def _nests_below(value: Any, levels: int) -> bool:
    """True if an object or array inside ``value`` is more than ``levels`` levels down.

    Recursive, but never more than ``levels`` calls deep (at most
    MAX_DEPTH, well within Python's limit): a walk that costs a function
    call per object or array rather than a stack entry per value, which
    matters as it runs on most notifications.
    """
    children = value.values() if isinstance(value, dict) else value
    for child in children:
        if isinstance(child, _CONTAINERS) and (levels == 0 or _nests_below(child, levels - 1)):
            return True
    return False


def _loads(text: str, what: str) -> Any:
    _check_text(text)
    try:
        obj = json.loads(text)
    except RecursionError:
        raise DecodeError("too-deep", f"{what} is nested too deeply to parse") from None
    except ValueError as exc:
        raise DecodeError("not-json", f"{what} is not JSON: {exc}") from None
    # Counting brackets runs at C speed; only text that could be that deep is walked.
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth_exceeds(obj, MAX_DEPTH):
        raise DecodeError("too-deep", f"{what} nests more than {MAX_DEPTH} levels")
    return obj


#: Content types a notification may be sent with: oslo.messaging sends
#: application/json; a missing or generic type is tried as JSON all the same.
ACCEPTED_CONTENT_TYPES = frozenset({"", "application/json", "text/json", "text/plain",
                                    "application/octet-stream"})
#: Content encodings of text: what oslo.messaging sends (utf-8) or nothing.
ACCEPTED_CONTENT_ENCODINGS = frozenset({"", "utf-8", "utf8", "binary"})


def check_delivery(size: int, content_type: str | None, content_encoding: str | None,
                   headers: dict[str, Any] | None, max_bytes: int) -> None:
    """Refuse a delivery before its body is looked at (pure; raises DecodeError).

    ``too-large``: more than ``max_bytes`` (0: no limit) bytes of body.
    ``compressed``: a kombu ``compression`` header or a compression as content
    encoding; never decompressed, since a small body can inflate to gigabytes.
    ``unsupported-encoding`` and ``unsupported-content-type``: anything but
    JSON text (a pickle, ``application/x-python-serialize``, is never loaded).
    """
    if max_bytes and size > max_bytes:
        raise DecodeError("too-large", f"the body has {size} bytes, more than "
                          f"[collector] max_message_bytes = {max_bytes}")
    compression = (headers or {}).get("compression")
    if compression:
        raise DecodeError("compressed", f"the body is compressed ({_short(compression)}); "
                          "compressed notifications are not accepted")
    encoding = (content_encoding or "").strip().lower()
    if encoding not in ACCEPTED_CONTENT_ENCODINGS:
        reason = ("compressed" if encoding in ("gzip", "x-gzip", "deflate", "zlib", "bzip2",
                                               "br", "zstd", "lzma", "xz", "compress")
                  else "unsupported-encoding")
        raise DecodeError(reason, f"content encoding {_short(content_encoding)} is not UTF-8")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype not in ACCEPTED_CONTENT_TYPES:
        raise DecodeError("unsupported-content-type",
                          f"content type {_short(content_type)} is not JSON")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def decode(body: bytes | str) -> Notification:
    """Decode a message body (UTF-8 JSON) into a :class:`Notification`.

    Raises :class:`DecodeError` (``not-utf8``, ``not-json``, ``too-deep``,
    ``not-object``, ``bad-envelope``, ``no-event-type``, ``bad-context``,
    ``bad-metadata``).
    """
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("not-utf8", f"invalid UTF-8 at byte {exc.start}") from None
    elif isinstance(body, str):
        text = body
    else:
        raise DecodeError("not-json", f"a body must be bytes or str, not {type(body).__name__}")
    return decode_object(_loads(text, "the body"))


def decode_object(obj: Any) -> Notification:
    """Decode already-parsed JSON (any of the three shapes); see :func:`decode`."""
    if not isinstance(obj, dict):
        raise DecodeError("not-object", f"a notification is a JSON object, not {_kind(obj)}")
    if ENVELOPE_VERSION_KEY in obj and ENVELOPE_MESSAGE_KEY in obj:
        # oslo.messaging treats a dict as an envelope only when both keys exist.
        version = obj[ENVELOPE_VERSION_KEY]
        if not isinstance(version, str) or version.split(".")[0] != "2":
            raise DecodeError("bad-envelope", f"unsupported envelope version {version!r}")
        inner = obj[ENVELOPE_MESSAGE_KEY]
        if not isinstance(inner, str):
            raise DecodeError("bad-envelope", f"oslo.message is {_kind(inner)}, not a JSON string")
        obj = _loads(inner, "oslo.message")
        if not isinstance(obj, dict):
            raise DecodeError("not-object", f"oslo.message holds {_kind(obj)}, not an object")
    return _from_message(obj)


def _kind(obj: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(obj), type(obj).__name__)


def _is_listener(obj: dict[str, Any]) -> bool:
    if "ctxt" in obj:
        return True
    if "metadata" not in obj:
        return False
    # A flat message that happens to carry a "metadata" key is still flat.
    return not any(isinstance(k, str) and k.startswith(CONTEXT_PREFIX) for k in obj)


def _from_message(obj: dict[str, Any]) -> Notification:
    event_type = obj.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise DecodeError("no-event-type", "the message has no event_type string"
                          if event_type is None else f"event_type is {_kind(event_type)}")

    if _is_listener(obj):
        context = obj.get("ctxt")
        if context is None:
            context = {}
        elif not isinstance(context, dict):
            raise DecodeError("bad-context", f"ctxt is {_kind(context)}, not an object")
        metadata = obj.get("metadata")
        if metadata is None:
            metadata = {}
        elif not isinstance(metadata, dict):
            raise DecodeError("bad-metadata", f"metadata is {_kind(metadata)}, not an object")
        message_id = metadata.get("message_id", obj.get("message_id"))
        raw_ts = metadata.get("timestamp", obj.get("timestamp"))
    else:
        context = {
            k[len(CONTEXT_PREFIX):]: v
            for k, v in obj.items()
            if isinstance(k, str) and k.startswith(CONTEXT_PREFIX)
        }
        message_id = obj.get("message_id")
        raw_ts = obj.get("timestamp")

    publisher_id = obj.get("publisher_id")
    if publisher_id is not None and not isinstance(publisher_id, str):
        publisher_id = str(publisher_id)
    priority = obj.get("priority")
    priority = priority.lower() if isinstance(priority, str) else ""
    raw_timestamp = raw_ts if isinstance(raw_ts, str) else None
    payload = obj.get("payload")

    if message_id is None or message_id == "":
        message_id = derive_message_id(event_type, publisher_id, priority, raw_timestamp,
                                       payload, context)
    elif not isinstance(message_id, str):
        message_id = str(message_id)

    return Notification(
        message_id=message_id,
        event_type=event_type,
        publisher_id=publisher_id,
        priority=priority,
        timestamp=parse_timestamp(raw_timestamp),
        payload=payload,
        context=context,
        raw_timestamp=raw_timestamp,
    )


def derive_message_id(event_type: str, publisher_id: str | None, priority: str,
                      timestamp: str | None, payload: Any, context: dict[str, Any]) -> str:
    """A message id derived from the content, the same for every shape.

    A redelivered message has the same content, hence the same id, so the
    store recognises it as a duplicate.
    """
    content = [event_type, publisher_id, priority, timestamp, payload, context]
    try:
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=True, default=repr)
    except (TypeError, ValueError):
        # Keys of mixed types cannot be sorted; repr is still deterministic.
        canonical = repr(content)
    except RecursionError:
        raise DecodeError("too-deep", "the message is nested too deeply") from None
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, canonical))
