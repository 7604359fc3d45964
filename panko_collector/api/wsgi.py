"""``application`` for WSGI servers (uwsgi, mod_wsgi, gunicorn ``panko_collector.api.wsgi``).

The configuration is read from the files named in ``PANKO_COLLECTOR_CONFIG_FILE``
(several separated by commas), else ``/etc/panko-collector/panko-collector.conf``.
"""

from __future__ import annotations

import os

from panko_collector import opts, service
from panko_collector.api import app

CONFIG_ENV = "PANKO_COLLECTOR_CONFIG_FILE"
DEFAULT_CONFIG = "/etc/panko-collector/panko-collector.conf"


def config_files() -> list[str]:
    """The files named by ``PANKO_COLLECTOR_CONFIG_FILE``, else the default file."""
    named = os.environ.get(CONFIG_ENV, "")
    return [f.strip() for f in named.split(",") if f.strip()] or [DEFAULT_CONFIG]


application = app.load_app(service.prepare_service([], config_files=config_files(),
                                                    groups=opts.api_groups()))
