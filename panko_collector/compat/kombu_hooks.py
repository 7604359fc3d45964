"""kombu's private names: the message class a py-amqp channel builds deliveries with.

kombu inflates any body with a ``compression`` header while building the
message (``kombu.message.Message.__init__``), before the collector's size
check could run: a 20 kB gzip bomb becomes gigabytes. Each channel's
``Message`` is replaced by one that hides the header from kombu and puts
it back afterwards, so the decoder dead-letters the message as compressed.
That guards safety: ``raw_bodies`` raises when it cannot be done.
"""

from __future__ import annotations

import inspect
from typing import Any

import kombu.transport.pyamqp

from panko_collector import errors
from panko_collector.compat import PrivateNames, amqp_hooks

PRIVATE_NAMES: PrivateNames = {
    "kombu.transport.pyamqp.Channel.Message":
        lambda: kombu.transport.pyamqp.Channel.Message is kombu.transport.pyamqp.Message,
    "kombu.transport.pyamqp.Message(msg, channel)":
        lambda: list(inspect.signature(kombu.transport.pyamqp.Message).parameters)[:2]
        == ["msg", "channel"],
}


class UndecompressedMessage(kombu.transport.pyamqp.Message):  # type: ignore[misc]
    """A delivery whose body kombu leaves as it came: never decompressed."""

    def __init__(self, msg: Any, channel: Any = None, **kwargs: Any) -> None:
        headers = msg.properties.get("application_headers") or {}
        if "compression" in headers:
            msg.properties["application_headers"] = {
                k: v for k, v in headers.items() if k != "compression"}
        super().__init__(msg, channel=channel, **kwargs)
        self.headers = headers


def raw_bodies(channel: Any) -> None:
    """Make ``channel`` deliver bodies as the raw bytes that were published:
    neither decoded by py-amqp nor decompressed by kombu.

    Raises ``LibraryIncompatible`` when either cannot be ensured.
    """
    amqp_hooks.keep_bodies_encoded(channel)
    if getattr(channel, "Message", None) is not kombu.transport.pyamqp.Message:
        raise errors.LibraryIncompatible(
            f"kombu's channel {type(channel).__name__} does not build deliveries with "
            "kombu.transport.pyamqp.Message: compressed bodies could be inflated")
    channel.Message = UndecompressedMessage
