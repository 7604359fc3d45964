"""What a database error means, and its translation into ours.

``kind()`` sorts any exception met while talking to the database into an
outage (``unavailable``: try again later), a row's fault (``data``) or
neither (``other``); ``translated()`` turns library errors into
``StorageUnavailable`` or ``StorageError`` accordingly, so that nothing
above the storage package sees SQLAlchemy's or a driver's exceptions.

The kind is read from the code the server or driver gives the error.

The words of an error message are never looked at: PostgreSQL translates
them into the language of its ``lc_messages``, and drivers reword them
between releases. Each backend gives every error a code instead:

- PostgreSQL: the SQLSTATE (psycopg 3 ``sqlstate``, psycopg2 ``pgcode``);
- MySQL/MariaDB: the error number, the first argument of the driver's
  exception (PyMySQL and mysqlclient alike); numbers 2000-2999 are the
  client library's own (connection refused, lost, gone away);
- SQLite: the extended result code (``sqlite3.Error.sqlite_errorcode``,
  Python 3.11 and newer), whose low byte is the primary code.

A code these tables do not name is left to ``kind()``, which then goes by
the DB-API exception class.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Literal

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect

from panko_collector import errors

#: 'unavailable': try again later; 'data': this row's fault; 'other': neither.
Kind = Literal["unavailable", "data", "other"]

#: SQLSTATE classes of an outage: connection exception, insufficient resources
#: (too many connections, disk full), operator intervention (shutdown, a
#: cancelled statement), system error (I/O).
_PG_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58"})
#: Single SQLSTATEs worth a retry: serialization failure, deadlock, lock not available.
_PG_UNAVAILABLE = frozenset({"40001", "40P01", "55P03"})
#: SQLSTATE classes of a row the database refuses: data exception, integrity violation.
_PG_DATA_CLASSES = frozenset({"22", "23"})
_PG_FOREIGN_KEY = "23503"

#: MySQL/MariaDB server errors worth a retry: too many connections, server
#: shutdown, lock wait timeout, deadlock, query interrupted, connection
#: killed (MariaDB), client disconnected for inactivity (MySQL 8).
_MYSQL_UNAVAILABLE = frozenset({1040, 1053, 1205, 1213, 1317, 1927, 4031})
#: The client library's own errors (2000-2999) are about the connection.
_MYSQL_CLIENT = range(2000, 3000)
#: Rows refused for their data: duplicate key, NULL in NOT NULL, foreign key,
#: out of range, too long, wrong value for the column's type.
_MYSQL_DATA = frozenset({1048, 1062, 1216, 1264, 1292, 1366, 1406, 1452, 1690})
#: "Cannot add or update a child row: a foreign key constraint fails" (1452;
#: 1216 is its older number).
_MYSQL_FOREIGN_KEY = frozenset({1216, 1452})

#: SQLite primary codes of a passing condition: another writer holds the
#: file, a table is locked, the file cannot be opened now, an I/O error.
_SQLITE_UNAVAILABLE = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR})
#: SQLite primary codes of a refused row: a constraint, a datatype mismatch,
#: a value too big.
_SQLITE_DATA = frozenset({sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH,
                          sqlite3.SQLITE_TOOBIG})


def sqlstate(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of a driver error, or None."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def mysql_errno(error: BaseException) -> int | None:
    """The MySQL/MariaDB error number of a driver error, or None."""
    if isinstance(error, OSError):  # its first argument is an errno
        return None
    args = getattr(error, "args", ())
    return args[0] if args and type(args[0]) is int else None


def sqlite_code(error: BaseException) -> int | None:
    """The SQLite extended result code of a driver error, or None."""
    code = getattr(error, "sqlite_errorcode", None) if isinstance(error, sqlite3.Error) else None
    return code if isinstance(code, int) else None


def classify(error: BaseException, dialect: str) -> Kind | None:
    """The kind of a DB-API ``error`` raised on ``dialect`` by its code; None
    when its code (or its absence) says nothing, and its class must decide."""
    if dialect == "postgresql":
        state = sqlstate(error)
        if state is None:
            return None
        if state[:2] in _PG_UNAVAILABLE_CLASSES or state in _PG_UNAVAILABLE:
            return "unavailable"
        return "data" if state[:2] in _PG_DATA_CLASSES else None
    if dialect == "sqlite":
        # Any SQLite error but these few is a fault of the schema or of the
        # call ("no such table" is an OperationalError too), never an outage.
        code = sqlite_code(error)
        if code is None:
            return "other" if isinstance(error, sqlite3.OperationalError) else None
        primary = code & 0xFF
        if primary in _SQLITE_UNAVAILABLE:
            return "unavailable"
        return "data" if primary in _SQLITE_DATA else "other"
    number = mysql_errno(error)
    if number is None:
        return None
    if number in _MYSQL_UNAVAILABLE or number in _MYSQL_CLIENT:
        return "unavailable"
    return "data" if number in _MYSQL_DATA else None


def is_foreign_key_violation(error: BaseException) -> bool:
    """True if ``error`` (a driver error, or SQLAlchemy's wrapper of one) is a
    foreign key violation: a row naming a parent row that does not exist."""
    orig = getattr(error, "orig", None) or error
    if sqlite_code(orig) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
        return True
    if sqlstate(orig) == _PG_FOREIGN_KEY:
        return True
    return not isinstance(orig, sqlite3.Error) and mysql_errno(orig) in _MYSQL_FOREIGN_KEY


def kind(exc: BaseException, dialect: Dialect) -> Kind:
    """Classify an exception raised on ``dialect``: by its code where it has
    one (``classify``), else by its DB-API or Python class."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "unavailable"
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return "unavailable"
    orig: BaseException = exc
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        orig = exc.orig
    dbapi = dialect.loaded_dbapi
    if isinstance(orig, dbapi.Error):
        by_code = classify(orig, dialect.name)
        if by_code is not None:
            return by_code
    if isinstance(orig, dbapi.OperationalError | dbapi.InterfaceError):
        return "unavailable"
    if isinstance(orig, dbapi.DataError | dbapi.IntegrityError):
        return "data"
    if isinstance(orig, ValueError | TypeError | OverflowError | UnicodeError):
        return "data"  # refused by the driver while binding this row's values
    if isinstance(orig, ConnectionError | TimeoutError):
        return "unavailable"
    return "other"


@contextlib.contextmanager
def translated(dialect: Dialect) -> Iterator[None]:
    """Turn library errors raised inside into ours: an outage becomes
    ``StorageUnavailable``, any other database error ``StorageError``.

    Our own errors, and exceptions that come from neither the database nor
    its driver (a bug), pass through unchanged.
    """
    try:
        yield
    except errors.PankoCollectorError:
        raise
    except Exception as exc:
        if not isinstance(exc, sa_exc.SQLAlchemyError | dialect.loaded_dbapi.Error
                          | ConnectionError | TimeoutError | ValueError):
            raise
        if kind(exc, dialect) == "unavailable":
            raise errors.StorageUnavailable(f"database unavailable: {exc}") from exc
        raise errors.StorageError(f"database error: {exc}") from exc
