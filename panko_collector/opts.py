"""Every option of panko-collector, gathered for oslo-config-generator.

Each module owns its options beside the code that reads them; this list is
the only place that knows all of them, and ``service.prepare_service``
registers exactly this list.
"""

from __future__ import annotations

from oslo_config import cfg

from panko_collector import collector, converter, expirer, metrics, queues, storage, transport
from panko_collector.api import options as api_options


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    from cotyledon import oslo_config_glue

    return [
        # graceful_shutdown_timeout and log_options, read by cotyledon itself.
        (None, list(transport.OPTS) + list(oslo_config_glue.service_opts)
         + list(api_options.AUTH_OPTS)),
        ("api", list(api_options.API_OPTS)),
        ("collector", list(collector.OPTS) + list(metrics.OPTS)),
        ("database", list(storage.OPTS) + list(expirer.DATABASE_OPTS)),
        ("event", list(converter.OPTS)),
        ("expirer", list(expirer.OPTS)),
        ("oslo_messaging_rabbit", list(transport.RABBIT_OPTS) + list(queues.RABBIT_OPTS)),
    ]
