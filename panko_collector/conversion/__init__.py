"""Notification to Event, with no I/O beyond reading the definitions file.

``decoder`` turns a message body into a ``Notification``, ``paths`` compiles
the JSONPath fields, ``definitions`` loads ``event_definitions.yaml``, and
``converter`` applies the definitions to a notification.
"""
