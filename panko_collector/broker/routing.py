"""Routing keys and priorities: the one place that knows how they map.

oslo.messaging publishes a notification of priority P on topic T with the
routing key ``T.P``; the standard queues are named after those keys. Pure,
so that the worker loop and the metrics can use it without kombu.
"""

from __future__ import annotations

from collections.abc import Sequence


def routing_keys(topics: Sequence[str], priorities: Sequence[str]) -> list[str]:
    """The routing key of every topic and priority, topic by topic."""
    return [f"{topic}.{priority}" for topic in topics for priority in priorities]


def priority_of(routing_key: str) -> str:
    """The priority a routing key names: its last dotted part, lower case.

    Never raises: a key without a dot is a priority of its own name, an
    empty key the empty priority (which no configuration stores).
    """
    return routing_key.rpartition(".")[2].lower()
