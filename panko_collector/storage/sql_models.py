"""Names that code outside the storage package imports from here.

The tables and their column types live in ``storage.sqlalchemy.tables``;
``to_naive_utc`` in ``storage.models``. Import them from there.
"""

from __future__ import annotations

from panko_collector.storage.models import to_naive_utc
from panko_collector.storage.sqlalchemy.tables import (
    DOUBLE_PRECISION,
    Base,
    PreciseTimestamp,
    decimal_to_dt,
    dt_to_decimal,
)

__all__ = ["DOUBLE_PRECISION", "Base", "PreciseTimestamp", "decimal_to_dt", "dt_to_decimal",
           "to_naive_utc"]
