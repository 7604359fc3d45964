"""The WSGI application: Panko's URL map and middleware around the views.

    CORS -> HTTPProxyToWSGI -> /            version document (no auth)
                               /healthcheck 200 when the database answers (no auth)
                               /v2          RequestId -> auth_token (or noauth) -> views

CORS sees only preflights and requests with an ``Origin``, HTTPProxyToWSGI
only runs when proxy headers parsing is on: elsewhere they change nothing.

Every error, whatever raised it, leaves as Panko's JSON error shape from
``_error_response``; no response carries SQL, a trace or a password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import flask
from keystonemiddleware import auth_token
from oslo_config import cfg
from oslo_middleware import cors, http_proxy_to_wsgi, request_id
from werkzeug import exceptions as http_errors
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from panko_collector import errors, storage
from panko_collector.api import query, render, views
from panko_collector.api.policy import Policy

LOG = logging.getLogger(__name__)

WSGIApp = Callable[..., Any]

#: Headers a browser may send and read (Panko's CORS defaults).
_CORS_DEFAULTS = {
    "allow_headers": ["X-Auth-Token", "X-Identity-Status", "X-Roles", "X-Service-Catalog",
                      "X-User-Id", "X-Tenant-Id", "X-Project-Id", "X-Openstack-Request-Id"],
    "expose_headers": ["X-Auth-Token", "X-Subject-Token", "X-Service-Token",
                       "X-Openstack-Request-Id"],
    "allow_methods": ["GET"],
}

_REASONS = {
    404: "The resource could not be found.",
    405: "The method is not allowed: this API only answers GET.",
    413: f"The request body is too large: it must be under {query.MAX_BODY_BYTES} bytes.",
}


def set_middleware_defaults() -> None:
    """Our defaults for oslo.middleware's [cors] options (also used by the sample generator)."""
    cors.set_defaults(**_CORS_DEFAULTS)


def _json_error(status: int, message: str) -> flask.Response:
    response = views.json_response(render.error(status, message), status)
    if status == 405:
        response.headers["Allow"] = "GET"
    return response


def _error_response(exc: Exception) -> flask.Response:
    """The one place where exceptions become responses."""
    if isinstance(exc, errors.RequestError):
        return _json_error(exc.status, str(exc))
    if isinstance(exc, errors.InvalidMarker):
        return _json_error(400, f"Invalid marker: {exc}. A marker is the message_id of the "
                                "last event of the previous page of the same query.")
    if isinstance(exc, errors.InvalidQuery):
        return _json_error(400, str(exc))
    if isinstance(exc, errors.StorageUnavailable):
        LOG.warning("Event database unavailable: %s", exc)
        return _json_error(503, "The event database is unavailable; try again later.")
    if isinstance(exc, http_errors.HTTPException):
        status = exc.code or 500
        return _json_error(status, _REASONS.get(status, str(exc.description or exc.name)))
    LOG.error("Request %s %s failed", flask.request.method, flask.request.path, exc_info=exc)
    reference = flask.request.environ.get(request_id.ENV_REQUEST_ID)
    return _json_error(500, "Internal server error; the server log has the details"
                            + (f" under request id {reference}." if reference else "."))


def _only_get() -> None:
    """Routing errors first (404, then 405), then anything but GET is 405.

    HEAD too, as in Panko, but on /healthcheck, which load balancers may probe
    with HEAD (oslo.middleware's healthcheck answered it).
    """
    request = flask.request
    if request.routing_exception is not None:
        raise request.routing_exception
    if request.method == "HEAD" and request.endpoint == "healthcheck":
        return
    if request.method != "GET":
        raise http_errors.MethodNotAllowed(["GET"])


def _flask_app(name: str) -> flask.Flask:
    app = flask.Flask(name)
    app.config["MAX_CONTENT_LENGTH"] = query.MAX_BODY_BYTES
    app.before_request(_only_get)
    app.register_error_handler(Exception, _error_response)
    return app


def _root_app(conn: storage.Connection) -> flask.Flask:
    app = _flask_app("panko_collector.api.root")

    def versions() -> flask.Response:
        return views.json_response(render.version_document(flask.request.url_root))

    def healthcheck() -> flask.Response:
        try:
            conn.get_event_types()
        except errors.StorageError as exc:
            raise errors.StorageUnavailable(str(exc)) from exc
        return flask.Response("OK", content_type="text/plain; charset=UTF-8")

    for rule, view in (("/", versions), ("/healthcheck", healthcheck)):
        app.add_url_rule(rule, view.__name__, view, methods=["GET"], strict_slashes=False,
                         provide_automatic_options=False)
    return app


def _authenticated(app: WSGIApp, conf: cfg.ConfigOpts) -> WSGIApp:
    """``app`` behind Keystone's auth_token, or as it is in noauth mode."""
    if conf.auth_strategy == "noauth":
        return app
    # auth_token reads (and registers) [keystone_authtoken] on our own conf,
    # and replaces any identity header a client sent by the token's.
    return auth_token.AuthProtocol(app, {"oslo_config_config": conf})  # type: ignore[no-any-return]


def build_app(conf: cfg.ConfigOpts, conn: storage.Connection) -> WSGIApp:
    """The whole WSGI application, reading events through ``conn``.

    Raises ``ConfigError`` when the policy or middleware options cannot work.
    """
    set_middleware_defaults()
    return _cors(_proxy_headers(_routed(conf, conn), conf), conf)


def _routed(conf: cfg.ConfigOpts, conn: storage.Connection) -> WSGIApp:
    """The URL map, without the outer middleware (CORS, proxy headers)."""
    v2 = _flask_app("panko_collector.api.v2")
    views.Views(conf, conn, Policy(conf)).register(v2)
    return DispatcherMiddleware(_root_app(conn), {
        "/v2": request_id.RequestId(_authenticated(v2, conf)),
    })


def _proxy_headers(app: WSGIApp, conf: cfg.ConfigOpts) -> WSGIApp:
    """``app`` behind HTTPProxyToWSGI when ``[oslo_middleware]
    enable_proxy_headers_parsing`` is on (it is read once: the option is
    not mutable), else ``app`` itself.

    Off, the middleware changes nothing but still wraps every request and
    response in WebOb objects.
    """
    proxied = http_proxy_to_wsgi.HTTPProxyToWSGI(app, conf)  # registers the option
    return proxied if conf.oslo_middleware.enable_proxy_headers_parsing else app


def _cors(app: WSGIApp, conf: cfg.ConfigOpts) -> WSGIApp:
    """``app`` behind oslo.middleware's CORS for the requests it acts on.

    CORS changes only the answers to preflights (OPTIONS) and to requests
    naming an ``Origin``; every other request goes straight to ``app``,
    sparing it CORS's WebOb round trip, with the same response.
    """
    with_cors = cors.CORS(app, conf)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if "HTTP_ORIGIN" in environ or environ.get("REQUEST_METHOD") == "OPTIONS":
            return with_cors(environ, start_response)
        return app(environ, start_response)

    return application


def load_app(conf: cfg.ConfigOpts) -> WSGIApp:
    """``build_app`` on a connection to ``[database] connection``."""
    return build_app(conf, storage.get_connection(conf.database.connection, conf))
