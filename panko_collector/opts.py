"""Every option of panko-collector, gathered for oslo-config-generator.

Each module owns its options beside the code that reads them; ``list_opts``
is the only place that knows all of them, and ``service.prepare_service``
registers exactly this list unless a command names the groups it reads.
The read-only commands do (``storage_groups``, ``api_groups``): gathering
every option imports the daemon, and with it kombu and cotyledon.
"""

from __future__ import annotations

from oslo_config import cfg

from panko_collector import expirer, storage
from panko_collector.api import options as api_options

#: Option groups as ``list_opts`` returns them: (group name or None, options).
Groups = list[tuple[str | None, list[cfg.Opt]]]


def database_opts() -> list[cfg.Opt]:
    """The options of the ``[database]`` group."""
    return list(storage.OPTS) + list(expirer.DATABASE_OPTS)


def storage_groups() -> Groups:
    """What the commands that only open the event store read: ``[database]``."""
    return [("database", database_opts())]


def api_groups() -> Groups:
    """What the REST API reads: its own options and ``[database]``."""
    return [(None, list(api_options.AUTH_OPTS)), ("api", list(api_options.API_OPTS)),
            ("database", database_opts())]


def list_opts() -> Groups:
    """Every option, by group, in the order of the shipped sample file."""
    # Imported here: these import the daemon's libraries, which the commands
    # that register only some groups must not load.
    from cotyledon import oslo_config_glue

    from panko_collector import daemon, metrics
    from panko_collector.broker import read_ahead, topology, transport
    from panko_collector.conversion import converter
    from panko_collector.ingest import settings

    return [
        # graceful_shutdown_timeout and log_options, read by cotyledon itself.
        (None, list(transport.OPTS) + list(oslo_config_glue.service_opts)
         + list(api_options.AUTH_OPTS)),
        ("api", list(api_options.API_OPTS)),
        ("collector", list(daemon.OPTS) + list(topology.OPTS) + list(settings.OPTS)
         + list(metrics.OPTS) + list(read_ahead.OPTS)),
        ("database", database_opts()),
        ("event", list(converter.OPTS)),
        ("expirer", list(expirer.OPTS)),
        ("oslo_messaging_rabbit", list(transport.RABBIT_OPTS) + list(topology.RABBIT_OPTS)),
    ]
