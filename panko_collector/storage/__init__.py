"""Event storage: the contract, its options, and the factory of connections."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from oslo_config import cfg

from panko_collector import errors
from panko_collector.storage.base import (
    Connection,
    EventFilter,
    FailedEvent,
    Pagination,
    RecordResult,
    TraitFilter,
    expiry_cutoff,
)

__all__ = [
    "OPTS",
    "Connection",
    "EventFilter",
    "FailedEvent",
    "Pagination",
    "RecordResult",
    "TraitFilter",
    "expiry_cutoff",
    "get_connection",
]

DEFAULT_CONNECTION = "sqlite:///panko-collector.sqlite"

OPTS = [
    cfg.StrOpt(
        "connection",
        default=DEFAULT_CONNECTION,
        secret=True,
        help="SQLAlchemy URL of the event database: sqlite:///PATH (the default, "
        "a file in the working directory), postgresql://USER:PASS@HOST/DB or "
        "mysql://USER:PASS@HOST/DB?charset=utf8mb4.",
    ),
    cfg.IntOpt(
        "events_delete_batch_size",
        default=10000,
        min=1,
        help="Number of expired events deleted per transaction (with their traits); "
        "smaller chunks hold shorter locks against concurrent inserts.",
    ),
]

# Schemes handled by the SQLAlchemy backend, with or without a driver suffix.
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb")


def get_connection(url: str, conf: Any = None) -> Connection:
    """Return a storage connection for ``url``.

    Raises ``UnsupportedBackend`` naming the scheme when no backend handles it.
    """
    scheme = urlsplit(url).scheme
    if scheme.split("+", 1)[0] not in _SQL_SCHEMES:
        raise errors.UnsupportedBackend(
            f"unsupported database URL scheme {scheme!r}: use one of "
            + ", ".join(f"{s}://" for s in _SQL_SCHEMES)
        )
    from panko_collector.storage import impl_sqlalchemy

    return impl_sqlalchemy.Connection(url, conf)
