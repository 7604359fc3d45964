"""``panko-collector``: consume notifications into the event store until stopped."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from panko_collector import collector, errors, service

LOG = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    conf = service.prepare_service(argv)
    try:
        collector.serve(conf)
    except errors.ConfigError as exc:
        LOG.error("%s", exc)
        sys.exit(1)
    except errors.BrokerRefused as exc:
        LOG.error("%s", exc)
        sys.exit(1)
