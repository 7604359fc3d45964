"""What becomes of one delivery: a pure decision, no broker and no database.

``classify`` takes a delivery's plain values (body, content type and
encoding, application headers, routing key) and says what the worker must
do with it:

- ``Store``: add its event to the batch; it is acked once committed;
- ``DeadLetter``: publish it to the dead-letter exchange with a reason
  (``too-large``, ``compressed``, ``unsupported-*``, a decoder reason such
  as ``not-json``, or ``convert-failed``), then ack it;
- ``DROP``: the definitions drop it (the converter returned no event): ack;
- ``IGNORE``: its priority is not one we store: ack.

The order is that of the checks' cost: size, content type and compression
first (the body is not even parsed when any of them is wrong), then
decoding, the priority, and conversion last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from panko_collector import errors
from panko_collector.broker.routing import priority_of
from panko_collector.conversion import decoder
from panko_collector.storage import models


class Converter(Protocol):
    """What turns a decoded notification into an event (None: dropped)."""

    def convert(self, notification: Any, received: Any = None) -> models.Event | None:
        """The event of ``notification``, or None when the definitions drop it."""


#: Parses a body into a notification; raises ``DecodeError``.
Decode = Callable[[bytes], Any]


class Delivery(Protocol):
    """A message as the broker delivered it, as far as the worker loop looks.

    ``broker.session`` hands these over; ``delivery_info`` holds at least
    ``routing_key``, ``exchange`` and ``consumer_tag``.
    """

    body: Any
    content_type: str | None
    content_encoding: str | None
    headers: Any
    delivery_info: Mapping[str, Any]
    delivery_tag: Any


@dataclass(slots=True)
class Store:
    """Batch ``event``; ack the delivery after the commit.

    Not frozen, unlike the other outcomes: one is made per stored message,
    and a frozen dataclass costs a slower ``__init__``.
    """

    event: models.Event


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Dead-letter the delivery with ``reason`` and ``detail``, then ack it."""

    reason: str
    detail: str
    #: The notification's id when it was decoded (for the log), else "".
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class Drop:
    """The definitions drop the notification: ack it, count it."""


@dataclass(frozen=True, slots=True)
class Ignore:
    """A priority we do not store: ack it, count it."""


DROP = Drop()
IGNORE = Ignore()

Outcome = Store | DeadLetter | Drop | Ignore


def classify(body: bytes, content_type: str | None, content_encoding: str | None,
             headers: Mapping[str, Any] | None, routing_key: str, *,
             decode: Decode, converter: Converter, priorities: frozenset[str],
             max_bytes: int) -> Outcome:
    """Decide what becomes of one delivery.

    ``priorities`` are lower case; a notification without a priority field
    has the one its routing key names. ``max_bytes`` 0 means no limit.
    A ``DecodeError`` becomes a ``DeadLetter`` with its reason, anything the
    converter raises one of reason ``convert-failed`` (its repr as detail):
    a message a worker cannot handle must not kill it, or its redelivery
    would kill the next one. Anything else the decoder raises is a bug and
    passes through.
    """
    try:
        decoder.check_delivery(len(body), content_type, content_encoding,
                               headers, max_bytes)  # type: ignore[arg-type]
        notification = decode(body)
    except errors.DecodeError as exc:
        return DeadLetter(exc.reason, exc.detail)
    priority = notification.priority or priority_of(routing_key)
    if priority not in priorities:
        return IGNORE
    try:
        event = converter.convert(notification)
    except Exception as exc:
        return DeadLetter("convert-failed", repr(exc),
                          str(getattr(notification, "message_id", "?")))
    if event is None:
        return DROP
    return Store(event)
