"""How one worker shares its prefetch bound between the consumers of its queues.

RabbitMQ 4.3 refuses a per-channel (global) prefetch, so each queue's
consumer gets a window of its own, and the windows add up to the worker's
bound. Pure: the consumer decides with these when to restart its
consumers and with which windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: A starved queue's consumer is restarted with a new window only when the
#: window would at least double: each restart costs a few round trips and
#: turns what that consumer holds into slots no window can use until acked,
#: so small corrections would churn for nothing.
GROWTH = 2


def share_windows(budget: int, demand: Mapping[str, float], floor: int) -> dict[str, int]:
    """Split ``budget`` prefetch slots between queues, in proportion to ``demand``.

    Every queue gets at least ``floor`` (lowered to what the budget allows)
    so that a quiet queue is still consumed and its first burst seen; the
    rest goes by demand (recent deliveries per queue), or evenly when
    nothing is known. The windows add up to exactly ``budget`` (largest
    remainders get the slots rounding leaves), so the worker may hold
    ``budget`` messages and no more. With fewer slots than queues every
    queue gets 1: a window of 0 would mean no limit at all.
    """
    names = list(demand)
    if budget < len(names):
        return dict.fromkeys(names, 1)
    floor = min(max(1, floor), budget // len(names))
    spare = budget - floor * len(names)
    weights = {q: max(0.0, d) for q, d in demand.items()}
    total = sum(weights.values())
    if total <= 0:
        weights, total = dict.fromkeys(names, 1.0), float(len(names))
    shares = {q: spare * w / total for q, w in weights.items()}
    windows = {q: floor + int(shares[q]) for q in names}
    left = budget - sum(windows.values())
    for q in sorted(names, key=lambda q: shares[q] - int(shares[q]), reverse=True)[:left]:
        windows[q] += 1
    return windows


def worth_rebalancing(current: Mapping[str, int], planned: Mapping[str, int],
                      starved: Iterable[str]) -> bool:
    """Whether a queue whose window filled up would get at least ``GROWTH`` times it."""
    return any(planned.get(q, 0) >= GROWTH * current.get(q, 0) for q in starved)


def floor_window(prefetch_count: int, queues: int) -> int:
    """The least window of a queue: a quiet queue keeps a small share."""
    return max(1, int(prefetch_count) // (8 * max(1, queues)))
