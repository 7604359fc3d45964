"""The /v2 endpoints: each parses the request, makes one storage call, renders.

Errors are raised as ``errors.RequestError`` (or come from storage) and
turned into Panko's JSON error shape by ``app``, in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flask
from oslo_config import cfg
from werkzeug import exceptions as http_errors

from panko_collector import errors, storage
from panko_collector.api import query, render
from panko_collector.api.policy import INDEX_RULE, SHOW_RULE, Policy


def json_response(body: Any, status: int = 200) -> flask.Response:
    """``body`` as a JSON response (``render.dumps``) with ``status``."""
    return json_text_response(render.dumps(body), status)


def json_text_response(text: str, status: int = 200) -> flask.Response:
    """A response of JSON already encoded (ASCII, so its UTF-8 is the same bytes)."""
    return flask.Response(text, status=status, content_type="application/json")


def _header(name: str) -> str | None:
    # Read from the WSGI environ itself: keystonemiddleware blanks the
    # identity headers of a token that lacks them by storing None there.
    value = flask.request.environ.get("HTTP_" + name.upper().replace("-", "_"))
    return value if isinstance(value, str) else None


class Views:
    """The handlers of /v2, bound to one storage connection and policy."""

    def __init__(self, conf: cfg.ConfigOpts, conn: storage.Connection, policy: Policy) -> None:
        self.conn = conn
        self.policy = policy
        self.default_limit = conf.api.default_api_return_limit
        self.max_limit = conf.api.max_limit

    def register(self, app: flask.Flask) -> None:
        """Add the GET routes of /v2 to ``app`` (no trailing-slash redirects, no OPTIONS)."""
        routes: list[tuple[str, Callable[..., flask.Response]]] = [
            ("/capabilities", self.capabilities),
            ("/events", self.list_events),
            ("/events/<message_id>", self.show_event),
            ("/event_types", self.event_types),
            ("/event_types/<event_type>", self.event_type),
            ("/event_types/<event_type>/traits", self.trait_descriptions),
            ("/event_types/<event_type>/traits/<trait_name>", self.traits),
        ]
        for rule, view in routes:
            app.add_url_rule(rule, view.__name__, view, methods=["GET"], strict_slashes=False,
                             provide_automatic_options=False)

    # ------------------------------------------------------------- callers

    def _caller(self) -> tuple[query.Identity, bool]:
        """The caller and whether they are an admin; ``Forbidden`` without a scope.

        Panko's rule: a user and a project are required. A system-scoped
        admin needs no project (it sees every project).
        """
        identity = query.Identity.from_headers(_header)
        admin = self.policy.is_admin(identity)
        scoped = identity.project_id or (admin and identity.system_scope == "all")
        if not identity.user_id or not scoped:
            raise errors.Forbidden("RBAC Authorization Failed: the request has no user and "
                                   "project (X-User-Id, X-Project-Id)")
        return identity, admin

    def _admin(self) -> None:
        """``NotAuthorized`` (401, as Panko) unless the caller is an admin."""
        identity = query.Identity.from_headers(_header)
        if not self.policy.is_admin(identity):
            raise errors.NotAuthorized(
                f"Not Authorized to access project {identity.project_id or '(none)'}: "
                "this endpoint is for administrators")

    # ------------------------------------------------------------- views

    def capabilities(self) -> flask.Response:
        """``GET /v2/capabilities``: what the API supports; open to every caller."""
        return json_response(render.CAPABILITIES)

    def list_events(self) -> flask.Response:
        """``GET /v2/events``: the events the caller may see that match the filters.

        Raises ``RequestError`` subclasses (400, 403, 413, 415) for a request to change.
        """
        identity, admin = self._caller()
        request = flask.request
        data = request.get_data(cache=False)
        if len(data) >= query.MAX_BODY_BYTES:
            # A chunked body is cut at the limit rather than refused: refuse it here.
            raise http_errors.RequestEntityTooLarge()
        body = query.parse_body(data, request.content_type)
        args = query.collect(query.split_query_string(request.query_string), body)
        self.policy.authorize(INDEX_RULE, identity)
        event_filter = query.event_filter(args.queries, identity, admin)
        page = query.pagination(args, self.default_limit, self.max_limit)
        return json_text_response(render.events_json(self.conn.get_events(event_filter, page)))

    def show_event(self, message_id: str) -> flask.Response:
        """``GET /v2/events/<message_id>``: one event; 404 when the caller may not see it."""
        identity, admin = self._caller()
        self.policy.authorize(SHOW_RULE, identity)
        # Scoped as a list is, without all_tenants.
        event_filter = dataclasses.replace(query.event_filter([], identity, admin),
                                           message_id=message_id)
        for event in self.conn.get_events(event_filter, {"limit": 1}):
            return json_text_response(render.event_json(event))
        raise errors.NotFound(f"Event {message_id} Not Found")

    def event_types(self) -> flask.Response:
        """``GET /v2/event_types``: every stored event type (admins only)."""
        self._admin()
        return json_response(list(self.conn.get_event_types()))

    def event_type(self, event_type: str) -> flask.Response:
        """``GET /v2/event_types/<type>``: always 404 for an admin, as in Panko."""
        self._admin()
        # Panko serves nothing here either: the types are only listed.
        raise errors.NotFound("The resource could not be found.")

    def trait_descriptions(self, event_type: str) -> flask.Response:
        """``GET /v2/event_types/<type>/traits``: trait names and types of a type (admins only)."""
        self._admin()
        return json_response([render.trait_description(t)
                              for t in self.conn.get_trait_types(event_type)])

    def traits(self, event_type: str, trait_name: str) -> flask.Response:
        """``GET /v2/event_types/<type>/traits/<name>``: the values stored (admins only)."""
        self._admin()
        return json_response([render.trait(t)
                              for t in self.conn.get_traits(event_type, trait_name)])
