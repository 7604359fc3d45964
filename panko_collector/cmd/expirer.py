"""panko-collector-expirer: one expiry run, for cron or a systemd timer."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from panko_collector import errors, expirer, opts, service, storage


class ProgressBar:
    """A one-line bar on a terminal: done of total, percent and rate."""

    WIDTH = 30

    def __init__(self, total: int, out: TextIO, unit: str = "events") -> None:
        self.total = max(total, 1)
        self.out = out
        self.unit = unit
        self.started = time.monotonic()

    def __call__(self, done: int) -> None:
        frac = min(done / self.total, 1.0)
        filled = int(frac * self.WIDTH)
        rate = done / max(time.monotonic() - self.started, 1e-6)
        self.out.write(
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {frac:6.1%} "
            f"{done}/{self.total} {self.unit}, {rate:,.0f}/s"
        )
        self.out.flush()

    def close(self) -> None:
        """End the bar's line, so that what is printed next starts on its own."""
        self.out.write("\n")
        self.out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """One expiry run; 0 done (or expiry disabled), 1 on a storage error."""
    conf = service.prepare_service(sys.argv[1:] if argv is None else argv,
                                   groups=opts.storage_groups())
    ttl = expirer.ttl_of(conf)
    if ttl is None:
        print("Event expiry is disabled ([database] event_time_to_live <= 0): nothing to do.")
        return 0
    try:
        conn = storage.get_connection(conf.database.connection, conf)
        # One cutoff for the count and the run: the bar's total is what the
        # run deletes.
        cutoff = storage.expiry_cutoff(ttl)
        bar = None
        if sys.stderr.isatty():
            bar = ProgressBar(conn.count_expired(ttl, cutoff=cutoff), sys.stderr)
        try:
            run = expirer.expire(conn, ttl, conf.database.events_delete_batch_size,
                                 progress=bar, cutoff=cutoff)
        finally:
            if bar is not None:
                bar.close()
    except errors.PankoCollectorError as exc:
        print(f"panko-collector-expirer: {exc}", file=sys.stderr)
        return 1
    expirer.log_run(run)
    if not run.deleted:
        expirer.LOG.info("No event older than %s to expire", run.cutoff.isoformat(sep=" "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
