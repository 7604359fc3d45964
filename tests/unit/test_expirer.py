"""expire() and the expirer service on a connection double: chunks, stops, outages.

The double only counts calls; what a chunk deletes is proven against the
real databases in tests/functional/test_storage_expiry.py and test_expirer.py.
"""

from __future__ import annotations

import datetime
import io
import logging
import threading
import time
from typing import Any

import pytest
from oslo_config import cfg

from panko_collector import errors, expirer, expirer_service, service
from panko_collector.cmd.expirer import ProgressBar
from panko_collector.storage import models


class ChunkedStore:
    """Holds ``expired`` events and deletes at most ``max_count`` per call."""

    def __init__(self, expired: int) -> None:
        self.expired = expired
        self.calls: list[int | None] = []
        self.cutoffs: list[datetime.datetime | None] = []

    def clear_expired_data(self, ttl: int, max_count: int | None = None, *,
                           cutoff: datetime.datetime | None = None) -> int:
        self.calls.append(max_count)
        self.cutoffs.append(cutoff)
        n = self.expired if max_count is None else min(self.expired, max_count)
        self.expired -= n
        return n


def run(store: ChunkedStore, **kw: Any) -> expirer.ExpiryRun:
    return expirer.expire(store, 3600, 10, **kw)  # type: ignore[arg-type]


def test_deletes_everything_in_chunks_of_the_batch_size() -> None:
    store = ChunkedStore(25)
    result = run(store)
    assert result.deleted == 25 and result.complete
    assert store.calls == [10, 10, 10]  # the last one finds 5 < 10 and ends the run


def test_exact_multiple_needs_one_empty_chunk_to_know_it_is_done() -> None:
    store = ChunkedStore(20)
    assert run(store).deleted == 20
    assert store.calls == [10, 10, 10]


def test_every_chunk_deletes_up_to_the_cutoff_the_run_reports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock that moves a minute per reading: a cutoff read per chunk would differ.
    start = datetime.datetime(2026, 1, 1)
    ticks = iter(range(1000))
    monkeypatch.setattr(models, "utcnow",
                        lambda: start + datetime.timedelta(minutes=next(ticks)))
    store = ChunkedStore(25)
    result = run(store)
    assert store.cutoffs == [result.cutoff] * 3
    assert result.cutoff == start - datetime.timedelta(seconds=3600)


def test_nothing_to_do() -> None:
    store = ChunkedStore(0)
    result = run(store)
    assert (result.deleted, result.complete, store.calls) == (0, True, [10])


def test_stop_request_is_honoured_between_chunks() -> None:
    store = ChunkedStore(100)
    calls = iter([False, False, True])
    result = run(store, should_stop=lambda: next(calls))
    assert result.deleted == 20 and not result.complete
    assert store.expired == 80


def test_progress_reports_running_totals() -> None:
    seen: list[int] = []
    run(ChunkedStore(25), progress=seen.append)
    assert seen == [10, 20, 25]


class Conf:
    class database:
        event_time_to_live = -1


def test_ttl_zero_or_less_disables_expiry() -> None:
    for value, expected in [(-1, None), (0, None), (1, 1), (86400, 86400)]:
        Conf.database.event_time_to_live = value
        assert expirer.ttl_of(Conf) == expected


# -- the in-daemon service, on a storage double ------------------------------


class FlakyStore(ChunkedStore):
    """Down for its first ``outages`` calls, then a store of ``expired`` events."""

    def __init__(self, expired: int, outages: int) -> None:
        super().__init__(expired)
        self.outages = outages

    def clear_expired_data(self, ttl: int, max_count: int | None = None, *,
                           cutoff: datetime.datetime | None = None) -> int:
        if self.outages:
            self.outages -= 1
            raise errors.StorageUnavailable("connection refused")
        return super().clear_expired_data(ttl, max_count, cutoff=cutoff)


def service_conf(ttl: int) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    service.register_opts(conf)
    conf([], project="panko-collector-test", default_config_files=[])
    conf.set_override("event_time_to_live", ttl, "database")
    conf.set_override("events_delete_batch_size", 10, "database")
    conf.set_override("interval", 1, "expirer")
    return conf


def test_service_survives_an_outage_and_tries_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    store = FlakyStore(expired=25, outages=1)
    monkeypatch.setattr(expirer_service.storage, "get_connection", lambda url, conf: store)
    svc = expirer_service.ExpirerService(0, service_conf(3600))
    thread = threading.Thread(target=svc.run)
    thread.start()
    deadline = time.monotonic() + 10
    while store.expired and time.monotonic() < deadline:
        time.sleep(0.05)
    svc.terminate()
    thread.join(5)
    assert not thread.is_alive()
    assert store.expired == 0, "the run after the outage deleted everything"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "connection refused" in warnings[0].getMessage()
    assert any("Expired 25 events" in r.getMessage() for r in caplog.records)


def test_service_with_ttl_off_does_nothing(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def no_storage(url: str, conf: object) -> None:
        raise AssertionError("no connection wanted")

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(expirer_service.storage, "get_connection", no_storage)
    svc = expirer_service.ExpirerService(0, service_conf(-1))
    svc.run()  # returns at once
    svc.terminate()
    assert [r.getMessage() for r in caplog.records if "off" in r.getMessage()]


def test_progress_bar_shows_share_done() -> None:
    out = io.StringIO()
    bar = ProgressBar(200, out)
    bar(50)
    bar(200)
    bar.close()
    lines = out.getvalue().split("\r")
    assert "[#######.......................]  25.0% 50/200 events" in lines[1]
    assert " 100.0% 200/200 events" in lines[2] and lines[2].endswith("\n")
