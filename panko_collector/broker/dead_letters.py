"""The dead-letter format: the headers the consumer gives a dead letter, and
the headers a replay gives back. Pure, but for one WARNING.

A dead letter is the original body, byte for byte, published to ``[collector]
dead_letter_exchange`` with its reason as routing key and these application
headers:

- ``reason`` and ``error``: why it could not be stored, and the detail;
- ``original_exchange`` and ``original_routing_key``: where it came from;
- ``original_compression``: its kombu ``compression`` header, when it had one
  (the body is as it came, never inflated);
- ``original_headers``: a table of every application header the original
  arrived with, as it arrived (``compression``, and broker headers such as
  ``x-death``, included). Nested rather than set beside ours, so that no
  header of a publisher (one named ``reason``, say) can pass for one of ours
  or be overwritten by it, and a replay gives back exactly that table;
- ``original_headers_omitted`` instead of ``original_headers`` when they would
  make the dead letter's header frame larger than the connection's
  ``frame_max``: RabbitMQ closes the connection on such a frame, so the
  message, redelivered, would close it again and again. Its value is the
  size of the table left out, in bytes; such a dead letter is not replayed.

Dead letters written before ``original_headers`` existed carry none of the
original's headers but ``compression`` (as ``original_compression``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import amqp.serialization

LOG = logging.getLogger(__name__)

ORIGINAL_HEADERS = "original_headers"
ORIGINAL_HEADERS_OMITTED = "original_headers_omitted"

#: Headers the consumer gives a dead letter; a replayed message carries none of them.
DEAD_LETTER_HEADERS = frozenset({
    "reason", "error", "original_exchange", "original_routing_key", "original_compression",
    ORIGINAL_HEADERS, ORIGINAL_HEADERS_OMITTED,
})

#: Headers RabbitMQ sets on a delivery (a redelivery from a quorum queue), not
#: part of the message as published: a replay leaves them out.
BROKER_HEADERS = frozenset({"x-delivery-count"})

#: Characters of the ``error`` detail kept.
ERROR_CHARS = 2000

#: Bytes of a header frame besides the application headers: frame and
#: content header fields, content type and encoding (255 bytes each at most),
#: delivery mode, and the key of the nested table.
_FRAME_RESERVE = 1024


def _table_bytes(table: Mapping[str, Any]) -> int:
    return len(amqp.serialization.dumps("F", [dict(table)]))


def headers(reason: str, error: str, delivery_info: Mapping[str, Any] | None,
            original: Mapping[str, Any] | None, frame_max: int) -> dict[str, Any]:
    """The application headers of the dead letter of a message that came by
    ``delivery_info`` with the application headers ``original``, on a
    connection whose frames hold ``frame_max`` bytes (0: no limit).

    Never raises for headers py-amqp decoded: it encodes every value it
    decodes. Too large to fit, ``original`` is left out (one WARNING).
    """
    info = delivery_info or {}
    kept = dict(original or {})
    out: dict[str, Any] = {
        "reason": reason,
        "error": error[:ERROR_CHARS],
        "original_exchange": info.get("exchange", ""),
        "original_routing_key": info.get("routing_key", ""),
    }
    if kept.get("compression"):
        out["original_compression"] = str(kept["compression"])
    size = _table_bytes(kept)
    if frame_max and _table_bytes(out) + size + _FRAME_RESERVE > frame_max:
        LOG.warning("a dead letter (%s) keeps none of the original's application headers: "
                    "%d bytes of them would not fit in a frame of %d bytes", reason, size,
                    frame_max)
        out[ORIGINAL_HEADERS_OMITTED] = size
    else:
        out[ORIGINAL_HEADERS] = kept
    return out


def replay_headers(dead_letter: Mapping[str, Any]) -> dict[str, Any]:
    """The application headers to replay a dead letter with, from its own.

    Exactly the original's (less ``BROKER_HEADERS``); for a dead letter
    older than ``original_headers``, whatever is not ours, with
    ``compression`` put back. Check ``ORIGINAL_HEADERS_OMITTED`` first: a
    dead letter carrying it lost the original's headers.
    """
    original = dead_letter.get(ORIGINAL_HEADERS)
    if isinstance(original, Mapping):
        return {k: v for k, v in original.items() if k not in BROKER_HEADERS}
    out = {k: v for k, v in dead_letter.items()
           if k not in DEAD_LETTER_HEADERS and k not in BROKER_HEADERS}
    compression = dead_letter.get("original_compression")
    if compression:
        out["compression"] = (compression.decode("utf-8", "replace")
                              if isinstance(compression, bytes) else str(compression))
    return out
