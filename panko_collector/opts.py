"""Every option of panko-collector, gathered for oslo-config-generator.

Each module owns its options beside the code that reads them; this list is
the only place that knows all of them, and ``service.prepare_service``
registers exactly this list.
"""

from __future__ import annotations

from oslo_config import cfg

from panko_collector import daemon, expirer, metrics, storage
from panko_collector.api import options as api_options
from panko_collector.broker import read_ahead, topology, transport
from panko_collector.conversion import converter
from panko_collector.ingest import settings


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    from cotyledon import oslo_config_glue

    return [
        # graceful_shutdown_timeout and log_options, read by cotyledon itself.
        (None, list(transport.OPTS) + list(oslo_config_glue.service_opts)
         + list(api_options.AUTH_OPTS)),
        ("api", list(api_options.API_OPTS)),
        ("collector", list(daemon.OPTS) + list(topology.OPTS) + list(settings.OPTS)
         + list(metrics.OPTS) + list(read_ahead.OPTS)),
        ("database", list(storage.OPTS) + list(expirer.DATABASE_OPTS)),
        ("event", list(converter.OPTS)),
        ("expirer", list(expirer.OPTS)),
        ("oslo_messaging_rabbit", list(transport.RABBIT_OPTS) + list(topology.RABBIT_OPTS)),
    ]
