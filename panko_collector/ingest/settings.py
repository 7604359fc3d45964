"""The options of the worker loop, and the settings it takes from them.

Declared apart from the loop itself, so that the option list can be
gathered without importing the broker client. The loop never reads
``ConfigOpts`` as it runs: it takes the frozen ``Settings`` and
``WriterSettings`` built here once, and a reload builds new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class WriterSettings:
    """What the writer thread needs: how it retries while the database is down."""

    #: Seconds before the first retry of a batch.
    retry_interval: float
    #: Longest pause between two retries.
    retry_max: float

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> WriterSettings:
        """Read ``[collector] storage_retry_*``."""
        c = conf.collector
        return cls(retry_interval=c.storage_retry_interval, retry_max=c.storage_retry_max)


@dataclass(frozen=True, slots=True)
class Settings:
    """The settings of one worker's loop, read once from the configuration.

    A reload (SIGHUP) builds them again; the loop then applies the batch,
    prefetch, size, summary and retry settings and keeps ``priorities``
    and the dead-letter names, which only a restart changes (the master
    pins those options, see ``daemon.RestartOnly``). ``read_ahead`` applies
    from the next broker connection.
    """

    batch_size: int
    batch_timeout: float
    #: Messages one worker may hold unacked; 0 in the file means twice batch_size.
    prefetch_count: int
    #: Largest body decoded; 0: no limit.
    max_message_bytes: int
    summary_interval: float
    #: Lower-case priorities whose notifications are stored.
    priorities: frozenset[str]
    dead_letter_exchange: str
    dead_letter_queue: str
    #: Backoff of broker reconnections and of refused dead letters.
    broker_retry_interval: float
    broker_retry_max: float
    read_ahead: bool
    writer: WriterSettings

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Settings:
        """Read ``[collector]`` and ``[oslo_messaging_rabbit]``; never raises
        for values oslo.config accepted."""
        c = conf.collector
        rabbit = conf.oslo_messaging_rabbit
        return cls(
            batch_size=c.batch_size,
            batch_timeout=c.batch_timeout,
            prefetch_count=c.prefetch_count or 2 * c.batch_size,
            max_message_bytes=c.max_message_bytes,
            summary_interval=c.summary_interval,
            priorities=frozenset(p.lower() for p in c.priorities),
            dead_letter_exchange=c.dead_letter_exchange,
            dead_letter_queue=c.dead_letter_queue,
            broker_retry_interval=rabbit.rabbit_retry_interval,
            broker_retry_max=rabbit.rabbit_interval_max,
            read_ahead=c.read_ahead,
            writer=WriterSettings.from_conf(conf),
        )
