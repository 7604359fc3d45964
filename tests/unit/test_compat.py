"""The private names of libraries that panko-collector uses are all in the
installed releases; one gone is noticed, and a safety guard fails closed."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import kombu.transport.pyamqp
import pytest
from amqp.abstract_channel import AbstractChannel
from amqp.transport import TCPTransport
from cotyledon import _service_manager
from jsonpath_ng import jsonpath as jp
from prometheus_client import values

from panko_collector import compat, errors
from panko_collector.compat import (
    amqp_hooks,
    cotyledon_hooks,
    jsonpath_hooks,
    kombu_hooks,
    prometheus_hooks,
)

MODULES = [amqp_hooks, cotyledon_hooks, jsonpath_hooks, kombu_hooks, prometheus_hooks]


def every_missing_name() -> list[str]:
    return [n for m in MODULES for n in compat.missing(m.PRIVATE_NAMES)]


def test_every_private_name_used_is_in_the_installed_libraries() -> None:
    names = [n for m in MODULES for n in m.PRIVATE_NAMES]
    assert names == [
        "amqp.transport.TCPTransport._quick_recv",
        "amqp.abstract_channel.AbstractChannel.auto_decode",
        "cotyledon._service_manager.ServiceManager._systemd_notify_once",
        "jsonpath_ng.jsonpath._Union",
        "jsonpath_ng.jsonpath.Wildcard",
        "kombu.transport.pyamqp.Channel.Message",
        "kombu.transport.pyamqp.Message(msg, channel)",
        "prometheus_client.values.ValueClass",
        "prometheus_client.values.get_value_class",
    ]
    assert every_missing_name() == []


def _setup_without_quick_recv(self: Any) -> None:
    self._write = self.sock.sendall


@pytest.mark.parametrize(("owner", "name", "replacement", "reported"), [
    (TCPTransport, "_setup_transport", _setup_without_quick_recv,
     "amqp.transport.TCPTransport._quick_recv"),
    (AbstractChannel, "__slots__", (), "amqp.abstract_channel.AbstractChannel.auto_decode"),
    (_service_manager.ServiceManager, "_systemd_notify_once", None,
     "cotyledon._service_manager.ServiceManager._systemd_notify_once"),
    (jp, "_Union", None, "jsonpath_ng.jsonpath._Union"),
    (jp, "Wildcard", None, "jsonpath_ng.jsonpath.Wildcard"),
    (kombu.transport.pyamqp.Channel, "Message", kombu.message.Message,
     "kombu.transport.pyamqp.Channel.Message"),
    (values, "get_value_class", None, "prometheus_client.values.get_value_class"),
])
def test_a_name_gone_from_its_library_is_reported(
        monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, replacement: Any,
        reported: str) -> None:
    if replacement is None:
        monkeypatch.delattr(owner, name)
    else:
        monkeypatch.setattr(owner, name, replacement)
    assert every_missing_name() == [reported]


def test_the_body_guard_missing_refuses_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    compat.check_at_start()
    monkeypatch.setattr(kombu.transport.pyamqp.Channel, "Message", kombu.message.Message)
    with pytest.raises(errors.LibraryIncompatible, match="refusing to start"):
        compat.check_at_start()


def test_a_speed_hook_missing_is_a_warning(monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(TCPTransport, "_setup_transport", _setup_without_quick_recv)
    monkeypatch.delattr(jp, "_Union")
    with caplog.at_level(logging.WARNING):
        compat.check_at_start()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "_quick_recv" in warnings[0] and "read-ahead" in warnings[0]
    assert "_Union" in warnings[1]


def test_raw_bodies_on_a_channel_fails_closed() -> None:
    with pytest.raises(errors.LibraryIncompatible, match="auto_decode"):
        kombu_hooks.raw_bodies(SimpleNamespace(Message=kombu.transport.pyamqp.Message))
    with pytest.raises(errors.LibraryIncompatible, match="compressed"):
        kombu_hooks.raw_bodies(SimpleNamespace(auto_decode=True, Message=kombu.message.Message))
    channel = SimpleNamespace(auto_decode=True, Message=kombu.transport.pyamqp.Message)
    kombu_hooks.raw_bodies(channel)
    assert channel.auto_decode is False and channel.Message is kombu_hooks.UndecompressedMessage
