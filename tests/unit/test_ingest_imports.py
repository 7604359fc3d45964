"""The worker loop's decisions need no broker client: only ``broker/``
imports kombu and py-amqp, and the ingest modules other than the
orchestrating consumer import nothing of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT = ["panko_collector.ingest.handling", "panko_collector.ingest.writer",
         "panko_collector.ingest.windows", "panko_collector.ingest.stats",
         "panko_collector.ingest.settings", "panko_collector.ingest.batch",
         "panko_collector.ingest.refused",
         "panko_collector.broker.routing"]


@pytest.mark.parametrize("module", LIGHT)
def test_imports_no_broker_client(module: str) -> None:
    code = (f"import sys, {module}\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('kombu', 'amqp'))\n"
            "print(','.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == "", f"{module} imports {out}"
