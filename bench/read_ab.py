"""get_events of two versions of impl_sqlalchemy side by side (not a test).

Times the worktree's ``panko_collector.storage.impl_sqlalchemy`` against
another version of that file (e.g. from git) on bench/api.py's kept
database, call by call alternating which goes first, and checks that both
return the same events with the same traits. Prints p50/p99 of each.

    git show a07c364:panko_collector/storage/impl_sqlalchemy.py > /tmp/before.py
    .venv/bin/python bench/read_ab.py --before /tmp/before.py --queries show,admin_own
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api

from panko_collector.storage import impl_sqlalchemy


def load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("impl_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["impl_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, required=True, help="the other impl_sqlalchemy.py")
    p.add_argument("--events", type=int, default=1_000_000, help="of pc_bench_api_<events>")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--queries", type=lambda v: v.split(","), default=list(api.QUERIES))
    p.add_argument("--repeat", type=int, default=60)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    url = f"{args.pg}/pc_bench_api_{args.events}"
    conns = {"before": load_module(args.before).Connection(url),
             "after": impl_sqlalchemy.Connection(url)}
    cases = api.make_cases(url, args.repeat, args.seed)
    gc.collect()
    gc.freeze()  # as in bench/api.py: the cases out of full collections
    for kind in args.queries:
        times: dict[str, list[float]] = {"before": [], "after": []}
        for i, case in enumerate(cases[kind]):
            got = {}
            for which in ("before", "after") if i % 2 else ("after", "before"):
                t0 = time.perf_counter()
                got[which] = [(e.message_id, [(t.name, t.dtype, t.value) for t in e.traits])
                              for e in conns[which].get_events(case.flt, case.page)]
                times[which].append(time.perf_counter() - t0)
            if got["before"] != got["after"]:
                raise SystemExit(f"{kind} case {i}: the two versions answer differently")
        skip = args.repeat // 10  # the first calls warm the connections up
        for which, values in times.items():
            p50, p99 = api.percentiles(values[skip:])
            print(f"{kind:12} {which:6}: p50 {p50:7.2f} ms  p99 {p99:7.2f} ms "
                  f"({len(values) - skip} calls, the same events as the other)")
    for conn in conns.values():
        conn.dispose()


if __name__ == "__main__":
    main()
