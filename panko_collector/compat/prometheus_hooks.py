"""prometheus-client's private names: the value class every metric is built with.

prometheus-client chooses between plain and multiprocess values once, when
``prometheus_client.values`` is imported (``values.ValueClass``, from
``values.get_value_class()``, reading ``PROMETHEUS_MULTIPROC_DIR``), and
every metric reads that attribute when it is built. Should it have been
imported before the daemon set the variable, ``use_multiprocess_values``
chooses again; where it cannot, a WARNING says that counts may be those of
one process only.
"""

from __future__ import annotations

import logging

from panko_collector.compat import PrivateNames

LOG = logging.getLogger(__name__)


def _values() -> object:
    from prometheus_client import values

    return values


PRIVATE_NAMES: PrivateNames = {
    "prometheus_client.values.ValueClass": lambda: hasattr(_values(), "ValueClass"),
    "prometheus_client.values.get_value_class":
        lambda: callable(getattr(_values(), "get_value_class", None)),
}


def use_multiprocess_values() -> None:
    """After ``PROMETHEUS_MULTIPROC_DIR`` is set: metrics built from now on
    write their values to that directory."""
    from prometheus_client import values

    if getattr(values.ValueClass, "_multiprocess", False):
        return
    get_value_class = getattr(values, "get_value_class", None)
    if not callable(get_value_class):
        LOG.warning("prometheus-client has no values.get_value_class: metrics may count "
                    "the values of one process only")
        return
    values.ValueClass = get_value_class()
