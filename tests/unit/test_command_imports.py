"""The read-only commands load neither the broker libraries nor the service manager.

Each command runs in a fresh interpreter, as it does when an operator types
it: its ``--help``, then a real run up to the point where it opens the event
store (refused here, so that no database is needed or touched). Importing
the daemon by accident, through a module or through ``opts.list_opts()``,
would load kombu, py-amqp and cotyledon and fail this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import contextlib, io, json, sys

from panko_collector import errors, storage


def refused(url, conf=None):
    raise errors.StorageUnavailable("no database in this test")


storage.get_connection = refused

from panko_collector.cmd import api, convert, dbsync, events, expirer

conf, notifications = sys.argv[1:3]
runs = {
    "events --help": (events.main, ["--help"]),
    "events types": (events.main, ["--config-file", conf, "types"]),
    "dbsync --help": (dbsync.main, ["--help"]),
    "dbsync": (dbsync.main, ["--config-file", conf]),
    "expirer --help": (expirer.main, ["--help"]),
    "expirer": (expirer.main, ["--config-file", conf]),
    "convert --help": (convert.main, ["--help"]),
    "convert": (convert.main, ["--config-file", conf, "--jobs", "1", notifications]),
    "api --help": (api.main, ["--help"]),
    "api": (api.main, ["--config-file", conf]),
}
codes = {}
for name, (main, argv) in runs.items():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            codes[name] = main(argv)
        except SystemExit as exc:
            codes[name] = exc.code
        except errors.StorageUnavailable:
            codes[name] = "refused"
loaded = sorted(m for m in ("kombu", "amqp", "cotyledon") if m in sys.modules)
print(json.dumps({"codes": codes, "loaded": loaded}))
"""


def test_read_only_commands_import_no_broker_and_no_service_manager(tmp_path: Path) -> None:
    conf = tmp_path / "panko-collector.conf"
    conf.write_text("[DEFAULT]\nauth_strategy = noauth\n"
                    "[database]\nconnection = sqlite:///" + str(tmp_path / "absent.sqlite")
                    + "\nevent_time_to_live = 60\n")
    notifications = tmp_path / "notifications.json"
    notifications.write_text(json.dumps({
        "event_type": "compute.instance.create.end", "message_id": "m-1",
        "publisher_id": "compute.host-1", "priority": "INFO",
        "timestamp": "2026-01-01 00:00:00", "payload": {}}))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(conf), str(notifications)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    # Every command got past its configuration: help printed, the store refused.
    assert report["codes"] == {
        "events --help": 0, "events types": 1, "dbsync --help": 0, "dbsync": 1,
        "expirer --help": 0, "expirer": 1, "convert --help": 0, "convert": 0,
        "api --help": 0, "api": "refused"}
    assert report["loaded"] == []
    assert not (tmp_path / "absent.sqlite").exists()
