"""The options of the worker loop, and the settings it takes from them.

Declared apart from the loop itself, so that the option list can be
gathered without importing the broker client.
"""

from __future__ import annotations

from oslo_config import cfg

#: [collector] options the worker loop reads.
OPTS = [
    cfg.IntOpt(
        "batch_size",
        default=500,
        min=1,
        help="Events written to the database in one transaction, at most.",
    ),
    cfg.FloatOpt(
        "batch_timeout",
        default=1.0,
        min=0.0,
        help="Seconds a batch may wait for more events before it is written.",
    ),
    cfg.IntOpt(
        "prefetch_count",
        default=0,
        min=0,
        sample_default="0 (twice batch_size)",
        help="Messages the broker hands one worker before they are acked; "
        "bounds memory while the database is down. 0 means twice batch_size.",
    ),
    cfg.IntOpt(
        "max_message_bytes",
        default=1024 * 1024,
        min=0,
        help="Largest message body, in bytes, the collector decodes; larger ones "
        "are dead-lettered (reason too-large, body kept whole) without being "
        "parsed. The default, 1 MiB, is over three times the largest real "
        "notification we know of (a nova instance.create.start of 290 kB). "
        "A worker holds at most prefetch_count bodies, so prefetch_count x "
        "max_message_bytes bounds its memory for bodies. 0: no limit.",
    ),
    cfg.FloatOpt(
        "storage_retry_interval",
        default=1.0,
        min=0.01,
        help="Seconds before the first retry of a batch when the database is unavailable.",
    ),
    cfg.FloatOpt(
        "storage_retry_max",
        default=30.0,
        min=0.01,
        help="Longest wait in seconds between retries while the database is unavailable.",
    ),
    cfg.FloatOpt(
        "summary_interval",
        default=60.0,
        min=1.0,
        help="Seconds between the INFO summaries each worker logs, and between "
        "two readings of the queue depths by the metrics service.",
    ),
]
