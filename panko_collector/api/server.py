"""Serving the API under gunicorn: ``[api] host/port/workers/threads/keepalive``.

The application is built once in the master (so a configuration error
stops the start) and each worker drops the database connections it
inherited, then opens its own.

Workers are gunicorn's threaded ones (gthread) rather than its sync ones,
for HTTP keep-alive: a sync worker closes the connection after every
response, so each request of a client paid a new TCP connection. A
gthread worker keeps idle connections in its poller for ``[api] keepalive``
seconds and serves ``[api] threads`` requests at a time. Unlike a sync
worker, it is not killed when one request outlasts gunicorn's timeout:
its main loop keeps reporting to the master while threads wait.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker
from oslo_config import cfg

from panko_collector import storage
from panko_collector.api import render
from panko_collector.api.app import WSGIApp

LOG = logging.getLogger(__name__)

#: The longest request line accepted (gunicorn's own ceiling): room for
#: about a hundred filters in the query string.
MAX_REQUEST_LINE = 8190


class JsonErrorWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, answering a request it cannot parse (over-long
    request line or headers, bytes that are not HTTP) in Panko's JSON error
    shape rather than an HTML page."""

    #: gunicorn's parse errors that are the client's, and what we answer.
    _CLIENT_ERRORS: list[tuple[type[Exception], int, str, str]] = [
        (http_errors.LimitRequestLine, 414, "URI Too Long",
         f"The request line is longer than {MAX_REQUEST_LINE} bytes: send the filters "
         "in a JSON body instead."),
        (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large",
         "The request headers are too large."),
        (http_errors.InvalidRequestLine, 400, "Bad Request",
         "The request line is not valid HTTP: it must be ASCII, with the query string "
         "percent-encoded as UTF-8."),
        (http_errors.InvalidRequestMethod, 400, "Bad Request", "Invalid HTTP method."),
        (http_errors.InvalidHTTPVersion, 400, "Bad Request", "Invalid HTTP version."),
    ]

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer a request gunicorn could not parse in JSON; other errors as gunicorn does.

        A client that has gone away gets nothing (logged at DEBUG).
        """
        for kind, status, reason, message in self._CLIENT_ERRORS:
            if isinstance(exc, kind):
                self.log.warning("Invalid request from %s: %s", (addr or ("",))[0], exc)
                body = json.dumps(render.error(status, message)).encode()
                head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                        "\r\n\r\n")
                try:
                    client.sendall(head.encode("latin-1") + body)
                except OSError:
                    self.log.debug("Failed to send error message.")
                return
        super().handle_error(req, client, addr, exc)


class Server(BaseApplication):  # type: ignore[misc]
    """gunicorn running one prebuilt application with settings from our conf."""

    def __init__(self, application: WSGIApp, settings: dict[str, Any]) -> None:
        self.application = application
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        """gunicorn's hook: apply our settings instead of reading its own files."""
        for key, value in self.settings.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        """gunicorn's hook: the prebuilt application, the same in every worker."""
        return self.application


def settings(conf: cfg.ConfigOpts, conn: storage.Connection) -> dict[str, Any]:
    """gunicorn settings for ``[api]``."""
    host = conf.api.host
    bind = f"[{host}]:{conf.api.port}" if ":" in host else f"{host}:{conf.api.port}"

    def post_fork(_server: Any, _worker: Any) -> None:
        # Pooled connections must not be shared with the master or siblings.
        conn.dispose()
        # What the worker inherits lives as long as it does: out of Python's
        # full collections, which a page of events (thousands of objects)
        # sets off every few dozen requests, and which would otherwise walk
        # the whole application each time, a pause in the request that
        # happens to set one off.
        gc.collect()
        gc.freeze()

    return {
        "bind": [bind],
        "workers": conf.api.workers or os.cpu_count() or 1,
        "worker_class": f"{__name__}.JsonErrorWorker",
        "threads": conf.api.threads,
        "keepalive": conf.api.keepalive,
        "proc_name": "panko-collector-api",
        "limit_request_line": MAX_REQUEST_LINE,
        "post_fork": post_fork,
        # A stopped API has nothing to finish but the requests in flight.
        "graceful_timeout": 10,
        # Its control socket lives in $HOME, which a sandboxed unit cannot
        # write, and would be shared by every API on the host.
        "control_socket_disable": True,
    }


def serve(conf: cfg.ConfigOpts, application: WSGIApp, conn: storage.Connection) -> None:
    """Serve until SIGTERM/SIGINT; gunicorn exits the process on fatal errors."""
    Server(application, settings(conf, conn)).run()
