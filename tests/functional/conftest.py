"""Fixtures of the functional tests: a RabbitMQ vhost of each test's own, and
the collector processes a test starts, killed when it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.functional.broker import vhost
from tests.functional.daemon import Collector

__all__ = ["collectors", "vhost"]


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    """Collectors a test appends to; whatever still runs is killed afterwards."""
    started: list[Collector] = []
    yield started
    for c in started:
        c.kill()
