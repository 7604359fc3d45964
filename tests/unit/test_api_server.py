"""gunicorn settings of panko-collector-api."""

from __future__ import annotations

import gc
from pathlib import Path

from panko_collector import service, storage
from panko_collector.api import server


def test_a_worker_keeps_what_it_inherits_out_of_full_collections(tmp_path: Path) -> None:
    conf = service.prepare_service([], config_files=[])
    conn = storage.get_connection(f"sqlite:///{tmp_path / 'events.db'}")
    post_fork = server.settings(conf, conn)["post_fork"]
    gc.unfreeze()
    try:
        post_fork(None, None)
        # The application built before the fork is no longer walked by
        # every full collection.
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
        conn.dispose()
