"""Every option of panko-collector, gathered for oslo-config-generator.

Each module owns its options beside the code that reads them; this list is
the only place that knows all of them, and ``service.prepare_service``
registers exactly this list.
"""

from __future__ import annotations

from oslo_config import cfg

from panko_collector import expirer, storage


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [
        ("database", list(storage.OPTS) + list(expirer.DATABASE_OPTS)),
        ("expirer", list(expirer.OPTS)),
    ]
