"""The one exception hierarchy of panko-collector.

Library errors (SQLAlchemy, kombu, PyYAML) are translated into these where
they enter our code, so callers never need to know which library failed.
The split that matters to callers is *transient* versus *permanent*:

    PankoCollectorError
    ├── ConfigError               permanent: the configuration cannot work
    │   ├── DefinitionsError      the event definitions file cannot be loaded
    │   └── UnsupportedBackend    a database URL scheme we have no driver for
    ├── DecodeError               permanent, per message: a body that is not a notification
    ├── StorageError              a database operation failed
    │   ├── StorageUnavailable    transient: connection refused or lost; retry the same work
    │   ├── InvalidMarker         a pagination marker names no event the query matches
    │   └── InvalidQuery          a filter or sort the store cannot express
    ├── BrokerError               a RabbitMQ operation failed
    │   ├── BrokerUnavailable     transient: connection refused or lost; reconnect
    │   └── QueueMismatch         permanent: a queue exists with other arguments
    └── RequestError              an API request the caller must change (HTTP 4xx)
        ├── BadRequest            400: a parameter, filter or body is invalid
        ├── NotAuthorized         401: the endpoint is for admins only (Panko's code)
        ├── Forbidden             403: no identity, or the policy denies it
        ├── NotFound              404: no such resource, or not visible to the caller
        └── UnsupportedMediaType  415: a request body that is not JSON

Transient errors mean "nothing was lost, try the same thing again later";
permanent ones mean "retrying will fail the same way".
"""

from __future__ import annotations


class PankoCollectorError(Exception):
    """Base class of every error panko-collector raises on purpose."""


class TransientError(PankoCollectorError):
    """Mixin marker: the operation may succeed if retried later unchanged."""


class ConfigError(PankoCollectorError):
    """The configuration cannot work; start-up stops with this message."""


class DefinitionsError(ConfigError):
    """The event definitions file cannot be loaded.

    The message names the file, the YAML line where known, and the definition.
    """


class UnsupportedBackend(ConfigError):
    """A database URL whose scheme no storage driver handles."""


class DecodeError(PankoCollectorError):
    """A message body that cannot become a notification.

    ``reason`` is a short stable code (``not-utf8``, ``not-json``,
    ``not-object``, ``no-event-type``, ...) used for dead-letter headers and
    metric labels; the message text says what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StorageError(PankoCollectorError):
    """A database operation failed."""


class StorageUnavailable(StorageError, TransientError):
    """The database refused or lost the connection; nothing was committed."""


class InvalidMarker(StorageError):
    """A pagination marker that names no event the query matches.

    Either no such event is stored, or it lies outside the filter (and so
    outside the caller's scope, which is part of the filter).
    """


class InvalidQuery(StorageError):
    """A trait filter or sort key that names no known operator, type or column."""


class BrokerError(PankoCollectorError):
    """A RabbitMQ operation failed."""


class BrokerUnavailable(BrokerError, TransientError):
    """The broker refused or lost the connection."""


class QueueMismatch(BrokerError):
    """RabbitMQ refused a queue declaration (PRECONDITION_FAILED).

    The queue exists with other arguments (durability, type, auto-delete)
    than ours; the message names the queue and the option to change.
    """


class RequestError(PankoCollectorError):
    """An API request that cannot be served as sent; ``status`` is its HTTP code.

    The message is the ``faultstring`` the caller sees: it says what to change.
    """

    status = 400


class BadRequest(RequestError):
    """A query parameter, filter, sort or request body that is invalid."""

    status = 400


class NotAuthorized(RequestError):
    """A non-admin on an admin-only endpoint (401, as Panko answers it)."""

    status = 401


class Forbidden(RequestError):
    """A request without user and project, or one the policy denies."""

    status = 403


class NotFound(RequestError):
    """No such resource, or none the caller may see (the two are not told apart)."""

    status = 404


class UnsupportedMediaType(RequestError):
    """A request body in another format than JSON."""

    status = 415
