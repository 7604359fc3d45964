"""Fixtures of the functional tests: a RabbitMQ vhost of each test's own, the
collector processes a test starts, killed when it ends, and a real Keystone
of the session (tests/functional/keystone.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.functional.broker import vhost
from tests.functional.daemon import Collector
from tests.functional.keystone import keystone

__all__ = ["collectors", "keystone", "vhost"]


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    """Collectors a test appends to; whatever still runs is killed afterwards."""
    started: list[Collector] = []
    yield started
    for c in started:
        c.kill()
