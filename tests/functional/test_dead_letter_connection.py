"""Dead letters go out on a connection of their own: a worker holds two
connections, named apart, and the loss of the dead-letter one alone is a
broker outage like any other (both reconnect, nothing is lost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from panko_collector import storage
from panko_collector.broker.session import DEAD_LETTER_CONNECTION
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.in_process import make_conf, start, stored_ids

pytestmark = pytest.mark.timeout(120)


def connections(vhost: str) -> dict[str, str]:
    """Connection pid -> client properties, of ``vhost``."""
    out = broker.rabbitmqctl("list_connections", "vhost", "pid", "client_properties")
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    return {row[1]: row[2] for row in rows if row[0] == vhost}


def test_losing_the_dead_letter_connection_reconnects_both(tmp_path: Path, vhost: str) -> None:
    conf = make_conf(tmp_path, vhost)
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    running = start(conf, store)
    try:
        wait_for(lambda: len(connections(vhost)) == 2, what="the worker's two connections")
        before = connections(vhost)
        (dead_letters,) = [pid for pid, props in before.items()
                           if f'"{DEAD_LETTER_CONNECTION}"' in props]
        broker.rabbitmqctl("close_connection", dead_letters, "test")
        # Noticed at the next heartbeat check, not at the next dead letter.
        wait_for(lambda: len(connections(vhost)) == 2
                 and not set(connections(vhost)) & set(before),
                 timeout=30, what="both connections made anew")
        notes = [broker.notification() for _ in range(5)]
        pub = Publisher(vhost)
        for n in notes:
            pub.publish(n)
        pub.publish_raw(b"{not json")
        pub.close()
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in notes}, what="stored")
        wait_for(lambda: broker.queue_counts(vhost).get(conf.collector.dead_letter_queue)
                 == (1, 0), what="the dead letter")
    finally:
        running.stop()
    assert running.consumer.totals.dead_lettered == 1
    assert broker.queue_counts(vhost)["notifications.info"] == (0, 0)
