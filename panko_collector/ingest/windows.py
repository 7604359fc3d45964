"""How one worker shares its prefetch bound between the consumers of its queues.

RabbitMQ 4.3 refuses a per-channel (global) prefetch, so each queue's
consumer gets a window of its own, and the windows add up to the worker's
bound. Pure: the consumer decides with these when to restart its
consumers and with which windows; ``Windows`` keeps their books.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence

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


class Windows:
    """The prefetch windows of one worker's running consumers, and the
    traffic they are shared by.

    Each consumer is known by the prefix of its consumer tags (kombu names
    a consumer's tag prefix + a counter), so a delivery's ``consumer_tag``
    tells which consumer, window and queue it came from. Pure bookkeeping:
    the consumer starts and cancels the consumers.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._serial = 0
        #: (queue name, window) of each running consumer, by its tag prefix.
        self.running: dict[str, tuple[str, int]] = {}
        #: Messages of the current batch per consumer (tag prefix), to see a window fill.
        self._in_batch: collections.Counter[str] = collections.Counter()
        #: Recent messages batched per queue name, halved at each batch.
        self._demand: dict[str, float] = {}

    def plan(self, budget: int, queues: Sequence[str], prefetch_count: int) -> dict[str, int]:
        """Windows for ``queues`` adding up to ``budget``, by recent demand
        (see ``share_windows``), none below a small floor."""
        return share_windows(budget, {q: self._demand.get(q, 0.0) for q in queues},
                             floor_window(prefetch_count, len(queues)))

    def start(self, queue: str, window: int) -> str:
        """A consumer of ``queue`` with ``window`` is about to start: its tag prefix.

        Known before it starts, since deliveries may come while the next
        one starts.
        """
        self._serial += 1
        prefix = f"{self._name}/{self._serial}/"
        self.running[prefix] = (queue, window)
        return prefix

    def stopped(self) -> None:
        """Every consumer was cancelled, or its channel is gone."""
        self.running = {}

    def delivered(self, consumer_tag: str) -> None:
        """A delivery of the consumer tagged ``consumer_tag`` went into the batch."""
        key = consumer_tag.rpartition("/")[0] + "/"
        self._in_batch[key] += 1
        window = self.running.get(key)
        if window is not None:
            queue = window[0]
            self._demand[queue] = self._demand.get(queue, 0.0) + 1

    def full(self) -> frozenset[str]:
        """The queues that sent half their window into the batch.

        With prefetch_count shared between several queues, a queue's window
        can be far below twice batch_size. Written once half its window is
        in, the batch is committed while the other half fills, as the
        default prefetch of twice batch_size does for one queue: written
        only when the window is full, the queue gets nothing during the
        commit, and after it the writer waits for the batch to fill again.
        Neither waits for batch_timeout.
        """
        return frozenset(q for key, (q, window) in self.running.items()
                         if self._in_batch[key] >= (window + 1) // 2)

    def batch_taken(self) -> None:
        """The batch went to the writer: count afresh; demand halves, so the
        windows follow the last few batches' mix."""
        self._in_batch.clear()
        self._demand = {q: d / 2 for q, d in self._demand.items()}

    def batch_lost(self) -> None:
        """The batch's messages came on a channel that is gone."""
        self._in_batch.clear()

    def current(self) -> dict[str, int]:
        """The window of each running consumer's queue."""
        return {q: w for q, w in self.running.values()}
