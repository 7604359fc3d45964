"""The read side: Panko's v2 REST API over the event store.

``query`` turns a request's parameters into a storage filter, ``render``
turns stored events into Panko's JSON, ``policy`` says who is an admin,
``views`` joins them (parse, one storage call, render), ``app`` builds the
WSGI stack around the views and ``server`` serves it under gunicorn.
``options`` declares their configuration options.
"""
