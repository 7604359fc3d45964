"""``panko-collector-publish-samples``: see events arrive, end to end.

Publishes a few sample notifications, as OpenStack services would (the
oslo.messaging v2 envelope, on their exchanges, with the
``<topic>.<priority>`` queue declared so nothing is lost before the collector
runs), to the broker of ``[DEFAULT] transport_url``; then, with ``--wait``,
waits until ``panko-collector`` has stored them and prints them from the
database of ``[database] connection``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kombu
from oslo_config import cfg

from panko_collector import service, storage
from panko_collector.broker import topology, transport
from panko_collector.cmd.events import render_value
from panko_collector.storage import EventFilter, models

CLI_OPTS = [
    cfg.IntOpt("count", default=1, min=1, help="How many times to publish the samples."),
    cfg.FloatOpt("wait", default=0.0, min=0.0,
                 help="Seconds to wait for the events in the database, then print "
                 "them (0: publish only)."),
    cfg.BoolOpt("with-collector", default=False,
                help="Run panko-collector with the same configuration files for the "
                "time of the demonstration and stop it (SIGTERM) once the events are "
                "printed; implies --wait 60 unless --wait is given."),
]


def samples() -> list[tuple[str, dict[str, Any]]]:
    """(exchange, notification) pairs with fresh ids and the current time."""
    now = str(models.utcnow())
    project, user = uuid.uuid4().hex, uuid.uuid4().hex
    instance, volume, port = (str(uuid.uuid4()) for _ in range(3))

    def note(event_type: str, publisher: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "message_id": str(uuid.uuid4()), "publisher_id": publisher,
            "event_type": event_type, "priority": "INFO", "payload": payload,
            "timestamp": now, "_context_request_id": f"req-{uuid.uuid4()}",
            "_context_project_id": project, "_context_user_id": user,
        }

    return [
        ("nova", note("compute.instance.create.end", "compute.host1", {
            "instance_id": instance, "tenant_id": project, "user_id": user,
            "display_name": "sample-vm", "instance_type": "m1.small", "memory_mb": 2048,
            "vcpus": 1, "root_gb": 20, "state": "active", "host": "host1",
            "launched_at": now})),
        ("cinder", note("volume.create.end", "volume.host1", {
            "volume_id": volume, "tenant_id": project, "user_id": user,
            "display_name": "sample-volume", "size": 10, "status": "available",
            "created_at": now})),
        ("neutron", note("port.create.end", "network.host1", {
            "port": {"id": port, "tenant_id": project, "name": "sample-port",
                     "status": "DOWN", "network_id": str(uuid.uuid4())}})),
        ("glance", note("image.upload", "image.localhost", {
            "id": str(uuid.uuid4()), "owner": project, "name": "sample-image",
            "size": 13287936, "status": "active"})),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Publish the samples and show the events they became; with
    ``--with-collector``, run a collector of the same configuration meanwhile.
    """
    conf = service.prepare_service(argv, cli_opts=CLI_OPTS)
    if not conf.with_collector:
        publish_and_show(conf, conf.wait)
        return
    # The collector of the same environment, with the same configuration.
    exe = Path(sys.executable).parent / "panko-collector"
    args = [arg for path in conf.config_file for arg in ("--config-file", path)]
    collector = subprocess.Popen([str(exe), *args])
    try:
        publish_and_show(conf, conf.wait or 60.0)
    finally:
        collector.send_signal(signal.SIGTERM)
        code = collector.wait(timeout=conf.graceful_shutdown_timeout + 10)
    if code != 0:
        print(f"panko-collector exited with status {code}", file=sys.stderr)
        sys.exit(1)


def publish_and_show(conf: cfg.ConfigOpts, wait: float) -> None:
    """Publish the samples; with ``wait``, print their events or exit 1."""
    url = transport.parse_url(conf.transport_url)
    topic = conf.collector.topics[0]
    key = f"{topic}.info"
    sent: list[str] = []
    queues = topology.Topology.from_conf(conf)
    with transport.connection(conf, url) as conn:
        channel = conn.channel()
        producer = kombu.Producer(channel)
        declared: set[str] = set()
        for _ in range(conf.count):
            for exchange_name, notification in samples():
                exchange = queues.exchange(exchange_name)
                if exchange_name not in declared:
                    # As an oslo.messaging notifier does: the standard queue
                    # holds the message until a consumer comes.
                    exchange(channel).declare()
                    kombu.Queue(key, exchange=exchange, routing_key=key,
                                durable=queues.durable,
                                auto_delete=queues.auto_delete,
                                queue_arguments=dict(queues.arguments) or None,
                                )(channel).declare()
                    declared.add(exchange_name)
                body = json.dumps({"oslo.version": "2.0",
                                   "oslo.message": json.dumps(notification)})
                producer.publish(body.encode(), exchange=exchange, routing_key=key,
                                 content_type="application/json", content_encoding="utf-8",
                                 delivery_mode=2 if queues.durable else 1)
                sent.append(notification["message_id"])
    print(f"published {len(sent)} notifications to {url.masked()} ({key})")
    if not wait:
        return
    store = storage.get_connection(conf.database.connection, conf)
    deadline = time.monotonic() + wait
    found: dict[str, models.Event] = {}
    while len(found) < len(sent) and time.monotonic() < deadline:
        for mid in sent:
            if mid not in found:
                for event in store.get_events(EventFilter(message_id=mid)):
                    found[mid] = event
        if len(found) < len(sent):
            time.sleep(0.5)
    for mid in sent:
        if (ev := found.get(mid)) is None:
            continue
        print(f"{ev.generated.isoformat()}  {ev.event_type}  {ev.message_id}")
        for trait in sorted(ev.traits, key=lambda t: t.name):
            print(f"    {trait.name} = {render_value(trait.value)}")
    if len(found) < len(sent):
        print(f"{len(sent) - len(found)} events not in the database after {wait}s: "
              "is panko-collector running with the same configuration?", file=sys.stderr)
        sys.exit(1)
