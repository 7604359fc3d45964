"""panko-collector: OpenStack notifications into Panko's event store."""

__version__ = "0.1.0"
