"""How a worker shares prefetch_count between the consumers of its queues
(``share_windows``) and when it restarts them with new windows
(``worth_rebalancing``): no broker needed for the decision."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from panko_collector.ingest.windows import Windows, share_windows, worth_rebalancing

PRIORITIES = ["audit", "critical", "debug", "error", "info", "sample", "warn"]


def test_nothing_known_yet_shares_evenly_and_uses_the_whole_budget() -> None:
    windows = share_windows(1000, dict.fromkeys(PRIORITIES, 0.0), floor=17)
    assert sum(windows.values()) == 1000
    assert set(windows.values()) <= {142, 143}


def test_a_busy_queue_among_quiet_ones_gets_all_but_their_floor() -> None:
    windows = share_windows(1000, {**dict.fromkeys(PRIORITIES, 0.0), "info": 142.0}, floor=17)
    assert windows["info"] == 1000 - 6 * 17
    assert all(windows[p] == 17 for p in PRIORITIES if p != "info")


def test_busy_queues_share_by_demand() -> None:
    demand = {**dict.fromkeys(PRIORITIES, 0.0), "info": 300.0, "error": 100.0}
    windows = share_windows(1000, demand, floor=10)
    spare = 1000 - 7 * 10
    assert windows["info"] - 10 in (spare * 3 // 4, spare * 3 // 4 + 1)
    assert windows["error"] - 10 in (spare // 4, spare // 4 + 1)
    assert sum(windows.values()) == 1000


def test_what_the_worker_already_holds_shrinks_the_floor_not_the_bound() -> None:
    windows = share_windows(10, {"a": 5.0, "b": 0.0, "c": 0.0, "d": 0.0}, floor=17)
    assert sum(windows.values()) == 10
    assert min(windows.values()) == 2


def test_fewer_slots_than_queues_gives_each_one_never_zero() -> None:
    # A window of 0 would mean "no limit" to RabbitMQ.
    assert share_windows(3, dict.fromkeys(PRIORITIES, 1.0), floor=1) == dict.fromkeys(
        PRIORITIES, 1)


@given(st.integers(min_value=7, max_value=65535),
       st.lists(st.floats(min_value=0, max_value=1e6), min_size=7, max_size=7),
       st.integers(min_value=0, max_value=5000))
def test_windows_add_up_to_the_budget_and_none_is_zero(
        budget: int, demand: list[float], floor: int) -> None:
    windows = share_windows(budget, dict(zip(PRIORITIES, demand, strict=True)), floor)
    assert sum(windows.values()) == budget
    assert min(windows.values()) >= 1


def test_the_first_starved_batch_of_a_busy_queue_rebalances() -> None:
    current = dict.fromkeys(PRIORITIES, 142)
    planned = share_windows(1000, {**dict.fromkeys(PRIORITIES, 0.0), "info": 142.0}, 17)
    assert worth_rebalancing(current, planned, {"info"})


def test_no_churn_once_the_windows_follow_the_traffic() -> None:
    # After the rebalance above: a quiet queue filling its small window now
    # and then, or the busy one filling its big one, changes nothing.
    current = {**dict.fromkeys(PRIORITIES, 17), "info": 898}
    demand = {**dict.fromkeys(PRIORITIES, 0.0), "info": 900.0, "error": 17.0}
    planned = share_windows(1000, demand, 17)
    assert not worth_rebalancing(current, planned, {"error"})
    assert not worth_rebalancing(current, planned, {"info"})


def test_traffic_moving_to_another_queue_rebalances_towards_it() -> None:
    current = {**dict.fromkeys(PRIORITIES, 17), "info": 898}
    demand = {**dict.fromkeys(PRIORITIES, 0.0), "info": 20.0, "error": 500.0}
    planned = share_windows(1000, demand, 17)
    assert worth_rebalancing(current, planned, {"error"})
    assert planned["error"] > planned["info"]


def test_the_books_of_the_running_consumers() -> None:
    books = Windows("w")
    planned = books.plan(1000, PRIORITIES, 1000)
    assert sum(planned.values()) == 1000
    prefixes = [books.start(q, planned[q]) for q in PRIORITIES]
    assert len(set(prefixes)) == len(PRIORITIES)
    assert all(p.startswith("w/") and p.endswith("/") for p in prefixes)
    assert books.current() == planned
    info = prefixes[PRIORITIES.index("info")]
    # Half of info's window (rounded up) in the batch: info's window is full.
    for n in range(1, (planned["info"] + 1) // 2 + 1):
        assert books.full() == frozenset()
        books.delivered(f"{info}{n}")
    assert books.full() == frozenset({"info"})
    # The traffic moves the next plan towards info, within the same budget.
    replanned = books.plan(1000, PRIORITIES, 1000)
    assert replanned["info"] > planned["info"] and sum(replanned.values()) == 1000
    assert worth_rebalancing(books.current(), replanned, books.full())


def test_a_new_batch_counts_afresh_and_demand_fades() -> None:
    books = Windows("w")
    prefix = books.start("info", 10)
    other = books.start("error", 10)
    for n in range(8):
        books.delivered(f"{prefix}{n}")
    books.batch_taken()
    assert books.full() == frozenset()
    faded = books.plan(100, ["info", "error"], 100)
    assert faded["info"] > faded["error"]
    for _ in range(10):
        books.batch_taken()
    books.delivered(f"{other}1")
    assert books.plan(100, ["info", "error"], 100)["error"] > 50


def test_deliveries_of_cancelled_consumers_count_in_no_window() -> None:
    books = Windows("w")
    prefix = books.start("info", 2)
    books.stopped()
    books.delivered(f"{prefix}1")
    books.delivered("")  # no consumer tag at all
    assert books.full() == frozenset() and books.current() == {}
    assert books.plan(10, ["info", "error"], 10) == {"info": 5, "error": 5}
