"""The API's options: ``[DEFAULT] auth_strategy`` and ``[api]``.

Declared here rather than beside the code that reads them (``app``,
``server``, ``views``) because ``opts.list_opts`` gathers every option of
the project for the daemon and the sample file: this module imports nothing
but oslo.config, so they do not load Flask, gunicorn and keystonemiddleware.
"""

from __future__ import annotations

from oslo_config import cfg

AUTH_OPTS = [
    cfg.StrOpt(
        "auth_strategy", default="keystone",
        choices=[("keystone", "Keystone tokens, checked by keystonemiddleware's auth_token "
                              "with the options of [keystone_authtoken]"),
                 ("noauth", "no authentication: the X-User-Id, X-Project-Id and X-Roles "
                            "headers are trusted as sent (tests, or behind a gateway that "
                            "authenticates and sets them)")],
        help="How the API authenticates its callers."),
]

API_OPTS = [
    cfg.HostAddressOpt("host", default="0.0.0.0", help="Address the API listens on."),
    cfg.PortOpt("port", default=8977, help="TCP port the API listens on (Panko's)."),
    cfg.IntOpt("workers", min=1,
               help="Worker processes serving requests, each [api] threads requests at "
                    "a time (default: one per CPU)."),
    cfg.IntOpt("threads", default=1, min=1,
               help="Requests each worker process serves at once, one thread each. "
                    "Threads of a process share one CPU (Python's GIL) but can overlap "
                    "their waits for the database; each adds a database connection to "
                    "the worker's pool when busy."),
    cfg.IntOpt("keepalive", default=2, min=0,
               help="Seconds an idle client connection stays open for its next request "
                    "(HTTP keep-alive, which python-requests sessions such as "
                    "pankoclient's use). 0 closes every connection after its response."),
    cfg.IntOpt("default_api_return_limit", default=100, min=1,
               help="Events returned by GET /v2/events when the request gives no limit "
                    "(or 0), as in Panko."),
    cfg.IntOpt("max_limit", default=1000, min=1,
               help="Most events one GET /v2/events returns: a larger limit is lowered "
                    "to this (Panko had no cap). Clients page with the marker."),
]
