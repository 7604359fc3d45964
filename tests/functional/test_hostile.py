"""Hostile messages on the real queues of a real ``panko-collector`` process.

Every hostile message is dead-lettered with its reason, or stored with the
offending trait left out; the valid messages around them are all stored.
The property test publishes generated bodies and accounts for every one.
"""

from __future__ import annotations

import gzip
import json
import pickle
import re
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from panko_collector import errors, service, storage
from panko_collector.conversion import decoder
from panko_collector.conversion.converter import Converter
from panko_collector.storage import EventFilter, impl_sqlalchemy
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.daemon import Collector, write_conf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SQL = "x'); DROP TABLE event; --"
DEFINITIONS = f"""
- event_type: 'hostile.*'
  traits:
    count: {{type: int, fields: payload.count}}
    ratio: {{type: float, fields: payload.ratio}}
    name: {{fields: payload.name}}
    "{SQL}\\0": {{fields: payload.sql}}
"""
SQL_TRAIT = f"{SQL}\x00"
DLQ = "panko-collector.dead-letter"  # the default name


class Marker:
    """Unpickling this creates ``path``: proof that a pickle body was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def publish(pub: Publisher, body: bytes, **properties: Any) -> None:
    key = "notifications.info"
    ex = pub._declare("nova", key)
    props = {"content_type": "application/json", "content_encoding": "utf-8", **properties}
    pub.producer.publish(body, exchange=ex, routing_key=key, **props)


def dlq_ready(vhost: str) -> int:
    with broker.connect(vhost) as conn:
        _, count, _ = conn.channel().queue_declare(DLQ, passive=True)
        return int(count)


def hostile_note(**payload: Any) -> dict[str, Any]:
    return broker.notification(event_type="hostile.thing", payload=payload)


def test_hostile_messages_dead_lettered_or_stored_beside_valid_ones(
        tmp_path: Path, vhost: str, db_url: str, collectors: list[Collector]) -> None:
    definitions = tmp_path / "definitions.yaml"
    definitions.write_text(DEFINITIONS)
    conf = write_conf(tmp_path / "collector.conf", vhost, db_url, definitions, workers=1)
    marker = tmp_path / "unpickled"
    good = iter([broker.notification() for _ in range(40)])
    valid: list[dict[str, Any]] = []
    pub = Publisher(vhost)

    def one_valid() -> None:
        note = next(good)
        valid.append(note)
        pub.publish(note)

    expected_reasons: list[str] = []

    def bad(reason: str, body: bytes, **properties: Any) -> None:
        one_valid()
        publish(pub, body, **properties)
        expected_reasons.append(reason)

    truncated = broker.envelope(broker.notification())
    bad("not-utf8", b'{"event_type": "a\xff\xfe"}')
    bad("not-json", truncated[: len(truncated) // 2])
    bad("not-object", b"[1, 2, 3]")
    bad("not-object", b'"just a string"')
    bad("bad-envelope", json.dumps({"oslo.version": "2.0", "oslo.message": {"a": 1}}).encode())
    bad("bad-envelope", json.dumps({"oslo.version": "2.0", "oslo.message": 42}).encode())
    bad("not-json", json.dumps({"oslo.version": "2.0", "oslo.message": "{nope"}).encode())
    bad("no-event-type", broker.envelope({"payload": {}, "message_id": "x"}))
    bad("no-event-type", broker.envelope({"event_type": ["a"], "payload": {}}))
    deep = "[" * 5000 + "]" * 5000
    bad("too-deep", f'{{"event_type": "hostile.deep", "payload": {deep}}}'.encode())
    huge = b'{"event_type": "hostile.big", "payload": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    bad("too-large", huge)
    zipped = gzip.compress(broker.envelope(broker.notification()))
    bad("compressed", zipped, headers={"compression": "application/x-gzip"})
    bad("compressed", zlib.compress(broker.envelope(broker.notification())),
        content_encoding="zlib")
    bad("unsupported-content-type", pickle.dumps(Marker(str(marker))),
        content_type="application/x-python-serialize", content_encoding="binary")
    bad("unsupported-encoding", broker.envelope(broker.notification()).decode().encode("utf-16"),
        content_encoding="utf-16")

    # Stored, each without its impossible value.
    kept = {
        "year10000": broker.notification(event_type="hostile.ts", payload={"name": "a"}),
        "negative": broker.notification(event_type="hostile.ts", payload={"name": "b"}),
        "bigint": hostile_note(count=2**64, name="c"),
        "nan": hostile_note(ratio=float("nan"), name="d"),
        "inf": hostile_note(ratio=float("inf"), count=-(2**70), name="e"),
        "nul_sql": hostile_note(name=f"{SQL}\x00tail", sql="\x00\x00", count=7),
    }
    kept["year10000"]["timestamp"] = "10000-01-01 00:00:00"
    kept["negative"]["timestamp"] = "-0001-01-01T00:00:00"
    for note in kept.values():
        one_valid()
        pub.publish(note)  # json.dumps writes NaN and Infinity, as Python publishers do
    one_valid()
    pub.close()

    store = storage.get_connection(db_url)
    store.upgrade()
    collector = Collector(conf)
    collectors.append(collector)
    try:
        collector.wait_consuming(1, timeout=20)
    except AssertionError:
        collector.kill()
        raise AssertionError(collector.proc.stderr.read().decode()[-3000:]) from None
    all_ids = {n["message_id"] for n in valid} | {n["message_id"] for n in kept.values()}
    wait_for(lambda: {e.message_id for e in store.get_events(EventFilter())} == all_ids,
             timeout=60, what="every valid message stored")
    wait_for(lambda: broker.queue_counts(vhost).get("notifications.info") == (0, 0),
             timeout=60, what="every message acked")
    assert collector.stop() == 0
    # The tables exist still: the SQL in names and values was data, never executed.
    events = {e.message_id: e for e in store.get_events(EventFilter())}
    assert len(events) == len(all_ids)

    nul = impl_sqlalchemy.NUL_REPLACEMENT if db_url.startswith("postgresql") else "\x00"

    def traits(key: str) -> dict[str, Any]:
        return {t.name: t.value for t in events[kept[key]["message_id"]].traits}

    assert traits("bigint")["name"] == "c" and "count" not in traits("bigint")
    assert "ratio" not in traits("nan") and "ratio" not in traits("inf")
    assert "count" not in traits("inf")
    assert traits("nul_sql").items() >= {"name": f"{SQL}{nul}tail", "count": 7,
                                         SQL_TRAIT.replace("\x00", nul): f"{nul}{nul}"}.items()
    for key in ("year10000", "negative"):
        # The message's own time is impossible: the time it was received is used.
        assert events[kept[key]["message_id"]].generated.year >= 2025
        assert traits(key)["name"] in ("a", "b")

    letters = broker.get_all(vhost, DLQ)
    assert sorted(m.headers["reason"] for m in letters) == sorted(expected_reasons)
    by_reason = {m.headers["reason"]: m for m in letters}
    assert len(by_reason["too-large"].body) == len(huge)  # kept whole, for a replay
    compressed = [m for m in letters if m.headers["reason"] == "compressed"]
    assert any(m.headers.get("original_compression") == "application/x-gzip"
               and m.body == zipped for m in compressed)
    assert not marker.exists(), "a pickle body was unpickled"
    log = collector.log()
    assert "Traceback" not in log
    assert "trait count dropped" in log


# -- the property test ---------------------------------------------------------

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80),
                                                            max_value=2**80),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
JSON = st.recursive(JSON_LEAF, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12)
HOSTILE_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    [SQL, "\x00", "a\x00b", "10000-01-01 00:00:00", "-1", ""])


@st.composite
def notifications(draw: st.DrawFn) -> dict[str, Any]:
    note = broker.notification(event_type=draw(st.sampled_from(
        ["hostile.thing", "compute.instance.update"]) | HOSTILE_TEXT))
    note["message_id"] = str(uuid.uuid4())
    note["payload"] = {"count": draw(JSON_LEAF), "ratio": draw(JSON_LEAF),
                       "name": draw(HOSTILE_TEXT), "sql": draw(JSON)}
    note["timestamp"] = draw(HOSTILE_TEXT | JSON_LEAF)
    for key in draw(st.lists(st.sampled_from(["event_type", "payload", "timestamp",
                                              "priority"]), max_size=2)):
        note.pop(key, None)
    return note


def _envelope_of(inner: Any) -> bytes:
    return json.dumps({"oslo.version": "2.0", "oslo.message": inner}).encode()


BODIES = st.one_of(
    st.binary(max_size=64),
    JSON.map(lambda v: json.dumps(v).encode()),
    notifications().map(broker.envelope),
    notifications().map(lambda n: json.dumps(n).encode()),
    notifications().map(lambda n: broker.envelope(n)[: len(broker.envelope(n)) // 2]),
    JSON.map(_envelope_of),
    st.integers(min_value=90, max_value=3000).map(
        lambda d: ('{"event_type": "hostile.deep", "payload": ' + "[" * d + "]" * d + "}")
        .encode()),
    st.integers(min_value=1, max_value=3).map(
        lambda k: b'{"event_type": "hostile.big", "payload": "' + b"y" * (k * 40_000) + b'"}'),
)

SUMMARY = re.compile(r": (\d+) messages in .*?: (\d+) events stored, (\d+) duplicates, "
                     r"(\d+) dropped, (\d+) ignored priorities, (\d+) dead-lettered")


def expected_outcome(conf: Any, converter: Converter, body: bytes) -> tuple[str, str | None]:
    """('dead', None), ('ignored', None) or ('stored', message_id), as the collector should."""
    try:
        decoder.check_delivery(len(body), "application/json", "utf-8", {},
                               conf.collector.max_message_bytes)
        note = decoder.decode(body)
    except errors.DecodeError:
        return "dead", None
    if (note.priority or "info") not in conf.collector.priorities:
        return "ignored", None
    event = converter.convert(note)
    assert event is not None  # no drop_unmatched here
    try:
        impl_sqlalchemy.prepare_event(event)
    except Exception:
        return "dead", None
    return "stored", event.message_id


def test_generated_hostile_bodies_are_all_accounted_for(
        tmp_path: Path, vhost: str, collectors: list[Collector]) -> None:
    definitions = tmp_path / "definitions.yaml"
    definitions.write_text(DEFINITIONS)
    db_url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    # A small limit, so that generated bodies cross it without megabytes on the wire.
    conf_path = write_conf(tmp_path / "collector.conf", vhost, db_url, definitions, workers=1,
                           batch_timeout=0.1, max_message_bytes=100_000)
    conf = service.prepare_service(["--config-file", str(conf_path)])
    converter = Converter.from_conf(conf)
    store = storage.get_connection(db_url)
    store.upgrade()
    collector = Collector(conf_path)
    collectors.append(collector)
    collector.wait_consuming(1)
    pub = Publisher(vhost)
    published = dead = ignored = 0
    stored: set[str] = set()
    valid: set[str] = set()

    # The state accumulates across examples, so a failure cannot be shrunk.
    @settings(max_examples=100, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(BODIES, min_size=1, max_size=8))
    def publish_and_account(bodies: list[bytes]) -> None:
        nonlocal published, dead, ignored
        for body in bodies:
            note = broker.notification()  # a valid one before each hostile one
            valid.add(note["message_id"])
            stored.add(note["message_id"])
            pub.publish(note)
            publish(pub, body)
            published += 2
            outcome, message_id = expected_outcome(conf, converter, body)
            if outcome == "dead":
                dead += 1
            elif outcome == "ignored":
                ignored += 1
            else:
                assert message_id is not None
                stored.add(message_id)
        def accounted() -> bool:
            state[:] = [{e.message_id for e in store.get_events(EventFilter())},
                        dlq_ready(vhost)]
            return state == [stored, dead]

        state: list[Any] = []
        try:
            wait_for(accounted, timeout=15, what="every message accounted for")
        except AssertionError:
            raise AssertionError(
                f"bodies {bodies!r}: stored {len(state[0])} (expected {len(stored)}; missing "
                f"{stored - state[0]}, unexpected {state[0] - stored}), dead letters "
                f"{state[1]} (expected {dead})") from None

    try:
        publish_and_account()
    finally:
        pub.close()
    wait_for(lambda: broker.queue_counts(vhost).get("notifications.info") == (0, 0),
             timeout=30, what="every message acked")
    assert collector.stop() == 0
    ids = [e.message_id for e in store.get_events(EventFilter())]
    assert len(ids) == len(set(ids)) and set(ids) == stored and valid <= set(ids)
    assert dlq_ready(vhost) == dead
    totals = [sum(int(m[i]) for m in SUMMARY.findall(collector.log())) for i in range(6)]
    messages, n_stored, duplicates, dropped, n_ignored, n_dead = totals
    assert messages == published
    assert (n_stored, n_ignored, n_dead) == (len(stored), ignored, dead)
    # Hypothesis replays examples: a repeated body with a derived id is a duplicate.
    assert n_stored + duplicates + dropped + n_ignored + n_dead == published


def test_a_burst_of_refused_events_is_dead_lettered_while_deliveries_keep_coming(
        tmp_path: Path, vhost: str) -> None:
    """Dead letters sent after a write (refused events) wait for confirms while
    the next deliveries, bad bodies among them, arrive: all are accounted for."""
    from panko_collector.ingest.consumer import Consumer
    from panko_collector.storage import models
    from tests.functional.in_process import Running, SimpleConverter, make_conf

    class Refusing(SimpleConverter):
        def convert(self, n: Any, received: Any = None) -> models.Event | None:
            event = super().convert(n)
            assert event is not None
            if n.event_type == "refuse.me":
                event.traits.append(models.Trait("bad", models.Trait.INT_TYPE, 2**80))
            return event

    conf = make_conf(tmp_path, vhost, batch_size=20, prefetch_count=200)
    store = storage.get_connection(conf.database.connection)
    store.upgrade()
    pub = Publisher(vhost)
    good, refused = [], []
    for i in range(300):
        note = broker.notification(event_type="refuse.me" if i % 2 else "fine.event")
        (refused if i % 2 else good).append(note)
        pub.publish(note)
        if i % 10 == 0:
            publish(pub, b"{not json")
    running = Running(Consumer(conf, store, Refusing(), decoder.decode, name="test"))
    try:
        wait_for(lambda: {e.message_id for e in store.get_events(EventFilter())}
                 == {n["message_id"] for n in good}, timeout=60, what="good events stored")
        wait_for(lambda: dlq_ready(vhost) == len(refused) + 30, timeout=60,
                 what="every refused event and bad body dead-lettered")
        wait_for(lambda: broker.queue_counts(vhost).get("notifications.info") == (0, 0),
                 what="everything acked")
    finally:
        pub.close()
        running.stop()
