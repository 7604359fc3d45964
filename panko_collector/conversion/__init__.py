"""Notification to Event, with no I/O beyond reading the definitions file.

``decoder`` turns a message body into a ``Notification``, ``paths`` compiles
the JSONPath fields, ``definitions`` loads ``event_definitions.yaml`` (its
trait ``plugins`` apart), ``values`` coerces trait values to the store's
types and limits, and ``converter`` applies the definitions to a
notification.
"""
