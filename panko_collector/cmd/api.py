"""``panko-collector-api``: serve Panko's v2 REST API over the event store."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from panko_collector import errors, opts, service, storage
from panko_collector.api import app, server

LOG = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the API under gunicorn until SIGTERM; exit 1 on a configuration error."""
    conf = service.prepare_service(argv, groups=opts.api_groups())
    # alembic announces each of its plugins at INFO; operators need none of that.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if conf.auth_strategy == "noauth":
        LOG.warning("auth_strategy = noauth: requests are NOT authenticated; the X-User-Id, "
                    "X-Project-Id and X-Roles headers are trusted as sent. Serve it only "
                    "behind a gateway that authenticates and sets them.")
    try:
        conn = storage.get_connection(conf.database.connection, conf)
        application = app.build_app(conf, conn)
    except errors.ConfigError as exc:
        LOG.error("%s", exc)
        sys.exit(1)
    LOG.info("Serving the event API on %s:%s", conf.api.host, conf.api.port)
    server.serve(conf, application, conn)
