"""Helpers shared by the storage tests (connections and events to store) and by
the daemon tests (what a real collector stored, read back by URL)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from sqlalchemy import create_engine, func, select, text

from panko_collector import storage
from panko_collector.storage import models

T = models.Trait
BASE = datetime.datetime(2024, 3, 1, 12, 0, 0, 123456)


def open_storage(url: str) -> Iterator[storage.Connection]:
    """An upgraded storage connection on ``url``; disposed afterwards."""
    conn = storage.get_connection(url)
    conn.upgrade()
    try:
        yield conn
    finally:
        conn.dispose()


def event(
    message_id: str,
    traits: list[models.Trait] | None = None,
    *,
    event_type: str = "compute.instance.create.end",
    generated: datetime.datetime = BASE,
    raw: dict[str, Any] | None = None,
) -> models.Event:
    return models.Event(message_id, event_type, generated, list(traits or []), raw or {})


def ids(events: Any) -> list[str]:
    return [e.message_id for e in events]


def count_rows(conn: storage.Connection, table: str) -> int:
    import sqlalchemy as sa

    engine = conn._engine  # type: ignore[attr-defined]
    with engine.connect() as c:
        return int(c.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def open_store(url: str) -> Any:
    store = storage.get_connection(url)
    store.upgrade()
    return store


def count_events(url: str) -> int:
    engine = create_engine(storage.get_connection(url).dress_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(text("event"))).scalar_one())
    finally:
        engine.dispose()


def stored_ids(url: str) -> list[str]:
    engine = create_engine(storage.get_connection(url).dress_url(url))
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT message_id FROM event"))]
    finally:
        engine.dispose()
