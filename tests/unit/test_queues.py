from __future__ import annotations

from pathlib import Path

import pytest

from panko_collector import errors, service
from panko_collector.broker import routing, topology


def _conf(tmp_path: Path, text: str = ""):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.conf"
    path.write_text(text)
    return service.prepare_service(["--config-file", str(path)])


def test_defaults_are_oslo_messaging_defaults(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    assert topology.durable(conf) is False
    assert topology.queue_arguments(conf) == {}
    ex = topology.Topology.from_conf(conf).exchange("nova")
    assert (ex.type, ex.durable, ex.auto_delete) == ("topic", False, False)


def test_standard_queues_without_pool(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "[collector]\nexchanges = nova,neutron\ntopics = notifications\n"
                 "priorities = info,error\n")
    plan = topology.Topology.from_conf(conf).plan()
    assert [q.name for q in plan] == ["notifications.info", "notifications.error"]
    assert plan[0].bindings == (("nova", "notifications.info"), ("neutron", "notifications.info"))
    assert not plan[0].durable and not plan[0].auto_delete


def test_pool_gives_one_queue_of_our_own(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "[collector]\nexchanges = nova,glance\ntopics = notifications,n2\n"
                 "priorities = info\npool = panko\n")
    (plan,) = topology.Topology.from_conf(conf).plan()
    assert plan.name == "panko"
    assert set(plan.bindings) == {("nova", "notifications.info"), ("glance", "notifications.info"),
                                  ("nova", "n2.info"), ("glance", "n2.info")}
    # Ours, so never transient (RabbitMQ 4.3 refuses transient non-exclusive
    # queues) although the services' queues are, by default.
    assert plan.durable
    assert not topology.durable(conf)


def test_durable_and_auto_delete(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "[oslo_messaging_rabbit]\namqp_durable_queues = true\n"
                 "amqp_auto_delete = true\n")
    spec = topology.Topology.from_conf(conf).plan()[0]
    assert spec.durable and spec.auto_delete and spec.arguments == {}
    ex = topology.Topology.from_conf(conf).exchange("nova")
    assert ex.durable and ex.auto_delete


def test_quorum_queues_are_durable_and_typed(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n"
                 "rabbit_quorum_delivery_limit = 5\nrabbit_quorum_max_memory_length = 10\n"
                 "rabbit_quorum_max_memory_bytes = 1024\n")
    assert topology.durable(conf)
    assert topology.queue_arguments(conf) == {
        "x-queue-type": "quorum", "x-delivery-limit": 5,
        "x-max-in-memory-length": 10, "x-max-in-memory-bytes": 1024,
    }
    assert topology.Topology.from_conf(conf).exchange("nova").durable


def test_ha_queues(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "[oslo_messaging_rabbit]\nrabbit_ha_queues = true\n")
    assert topology.queue_arguments(conf) == {"x-ha-policy": "all"}
    both = _conf(tmp_path, "[oslo_messaging_rabbit]\nrabbit_ha_queues = true\n"
                 "rabbit_quorum_queue = true\n")
    with pytest.raises(errors.ConfigError):
        topology.queue_arguments(both)


def test_legacy_default_group_for_durable(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "[DEFAULT]\namqp_durable_queues = true\n")
    assert topology.durable(conf)


def test_the_priority_a_routing_key_names() -> None:
    assert routing.priority_of("notifications.INFO") == "info"
    assert routing.priority_of("a.b.error") == "error"
    assert routing.priority_of("warn") == "warn"
    assert routing.priority_of("") == ""
    for key in routing.routing_keys(["notifications", "n2"], ["info", "error"]):
        assert routing.priority_of(key) in ("info", "error")
