"""Fixtures of the functional tests: a RabbitMQ vhost of each test's own."""

from __future__ import annotations

from tests.functional.broker import vhost

__all__ = ["vhost"]
