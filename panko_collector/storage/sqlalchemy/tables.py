"""Panko's event tables as SQLAlchemy models, and handles on them for the queries.

Names, types, keys and indexes are Panko's, so that a database Panko
created can be taken over in place and Panko's users and tools keep reading
it. Two departures:

- an index on ``(key, value, event_id)`` of each trait table (revision
  pc0003), without which every trait filter scans the whole table;
  event_id in it lets PostgreSQL answer from the index alone;
- no foreign key from the trait tables to ``event`` (revision pc0004):
  checking it costs an index lookup per stored trait, and it would catch
  nothing, since the storage code writes and deletes an event's traits with
  the event, in one transaction.

Two column types carry Panko's storage conventions:

- ``PreciseTimestamp``: naive UTC datetimes with microseconds; MySQL/MariaDB
  store them as ``DECIMAL(20,6)`` seconds since the epoch (Panko did so
  because old MySQL dropped fractional seconds), every other database as
  ``DateTime``.
- ``raw`` is ``Text`` holding the notification as JSON; the connection
  encodes and decodes it.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from panko_collector.storage import models
from panko_collector.storage.models import TEXT_LIMIT, to_naive_utc

#: Longest message id the schema holds (Panko's VARCHAR(50)); longer ones are refused.
MESSAGE_ID_LIMIT = 50
EPOCH = datetime.datetime(1970, 1, 1)
MYSQL_DIALECTS = ("mysql", "mariadb")

#: Panko's Float(53); MySQL turns FLOAT(53) into DOUBLE, so say DOUBLE there
#: and the schema reads back as it was declared.
DOUBLE_PRECISION = Float(53).with_variant(mysql.DOUBLE(asdecimal=False), *MYSQL_DIALECTS)
_ONE_MICROSECOND = datetime.timedelta(microseconds=1)


def dt_to_decimal(value: datetime.datetime) -> decimal.Decimal:
    """Seconds since the epoch with exactly six decimals (no float rounding)."""
    micros = (to_naive_utc(value) - EPOCH) // _ONE_MICROSECOND
    return decimal.Decimal(micros).scaleb(-6)


def decimal_to_dt(value: decimal.Decimal) -> datetime.datetime:
    """Inverse of ``dt_to_decimal``."""
    return EPOCH + datetime.timedelta(microseconds=int(decimal.Decimal(value).scaleb(6)))


class PreciseTimestamp(TypeDecorator[datetime.datetime]):
    """A naive UTC timestamp precise to the microsecond on every backend.

    Aware datetimes given to it are converted to naive UTC first.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The column type on ``dialect``: DECIMAL(20,6) on MySQL, else DATETIME."""
        if dialect.name in MYSQL_DIALECTS:
            return dialect.type_descriptor(mysql.DECIMAL(precision=20, scale=6, asdecimal=True))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """A datetime as ``dialect`` stores it (naive UTC, or decimal seconds)."""
        if value is None:
            return None
        if dialect.name in MYSQL_DIALECTS:
            return dt_to_decimal(value)
        return to_naive_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        """A stored value back as a naive UTC datetime."""
        if value is None:
            return None
        if dialect.name in MYSQL_DIALECTS:
            return decimal_to_dt(value)
        assert isinstance(value, datetime.datetime)
        return value


class Base(DeclarativeBase):
    """Declarative base of Panko's tables (InnoDB, utf8mb4 on MySQL)."""

    metadata = MetaData()


_MYSQL_TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


class EventType(Base):
    """One row per event type name (``desc``)."""

    __tablename__ = "event_type"
    __table_args__ = (_MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    desc: Mapped[str | None] = mapped_column(String(TEXT_LIMIT), unique=True)


class Event(Base):
    """One stored notification."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_message_id", "message_id"),
        Index("ix_event_type_id", "event_type_id"),
        Index("ix_event_generated", "generated"),
        _MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str | None] = mapped_column(String(MESSAGE_ID_LIMIT), unique=True)
    generated: Mapped[datetime.datetime | None] = mapped_column(PreciseTimestamp())
    event_type_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("event_type.id"))
    raw: Mapped[str | None] = mapped_column(Text)


class TraitText(Base):
    """Text (and NONE-typed) traits, cut to 255 characters."""

    __tablename__ = "trait_text"
    __table_args__ = (
        Index("ix_trait_text_event_id_key", "event_id", "key"),
        Index("ix_trait_text_key_value", "key", "value", "event_id"),
        _MYSQL_TABLE_ARGS,
    )

    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(TEXT_LIMIT), primary_key=True)
    value: Mapped[str | None] = mapped_column(String(TEXT_LIMIT))


class TraitInt(Base):
    """Integer traits (64-bit)."""

    __tablename__ = "trait_int"
    __table_args__ = (
        Index("ix_trait_int_event_id_key", "event_id", "key"),
        Index("ix_trait_int_key_value", "key", "value", "event_id"),
        _MYSQL_TABLE_ARGS,
    )

    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(TEXT_LIMIT), primary_key=True)
    value: Mapped[int | None] = mapped_column(BigInteger)


class TraitFloat(Base):
    """Float traits (double precision)."""

    __tablename__ = "trait_float"
    __table_args__ = (
        Index("ix_trait_float_event_id_key", "event_id", "key"),
        Index("ix_trait_float_key_value", "key", "value", "event_id"),
        _MYSQL_TABLE_ARGS,
    )

    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(TEXT_LIMIT), primary_key=True)
    value: Mapped[float | None] = mapped_column(DOUBLE_PRECISION)


class TraitDatetime(Base):
    """Datetime traits, naive UTC with microseconds."""

    __tablename__ = "trait_datetime"
    __table_args__ = (
        Index("ix_trait_datetime_event_id_key", "event_id", "key"),
        Index("ix_trait_datetime_key_value", "key", "value", "event_id"),
        _MYSQL_TABLE_ARGS,
    )

    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(TEXT_LIMIT), primary_key=True)
    value: Mapped[datetime.datetime | None] = mapped_column(PreciseTimestamp())


EVENT_TYPE = Base.metadata.tables["event_type"]
EVENT = Base.metadata.tables["event"]
TRAIT_TEXT = Base.metadata.tables["trait_text"]
TRAIT_INT = Base.metadata.tables["trait_int"]
TRAIT_FLOAT = Base.metadata.tables["trait_float"]
TRAIT_DATETIME = Base.metadata.tables["trait_datetime"]

#: The table of each trait type that has one, by ``models.Trait`` type code;
#: NONE-typed traits are stored as text.
STORED_TRAIT_TABLES: dict[int, Table] = {
    models.Trait.TEXT_TYPE: TRAIT_TEXT,
    models.Trait.INT_TYPE: TRAIT_INT,
    models.Trait.FLOAT_TYPE: TRAIT_FLOAT,
    models.Trait.DATETIME_TYPE: TRAIT_DATETIME,
}
#: The table of every trait type code, NONE included.
TRAIT_TABLES: dict[int, Table] = {models.Trait.NONE_TYPE: TRAIT_TEXT, **STORED_TRAIT_TABLES}
