"""panko-collector-dbsync: create or upgrade the event database schema."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from oslo_log import log

from panko_collector import errors, opts, service, storage

LOG = log.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Upgrade ``[database] connection`` to the newest schema; 1 on failure."""
    conf = service.prepare_service(sys.argv[1:] if argv is None else argv,
                                   groups=opts.storage_groups())
    # alembic announces each of its plugins at INFO; operators need none of that.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    url = conf.database.connection
    try:
        conn = storage.get_connection(url, conf)
        conn.upgrade()
    except errors.PankoCollectorError as exc:
        LOG.error("Cannot upgrade the database: %s", exc)
        return 1
    LOG.info("The database schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
