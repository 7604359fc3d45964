"""panko-collector-events against a real database filled through record_events."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

from panko_collector import storage
from panko_collector.cmd import events as cli
from panko_collector.storage import models

T = models.Trait
BASE = datetime.datetime(2025, 6, 1, 12, 0, 0, 250000)


@pytest.fixture
def conf_file(tmp_path: Path, db_url: str) -> Path:
    conn = storage.get_connection(db_url)
    conn.upgrade()
    conn.record_events([
        models.Event(f"msg-{i}", "compute.instance.create.end" if i % 2 else "volume.create.end",
                     BASE + datetime.timedelta(minutes=i),
                     [T("project_id", T.TEXT_TYPE, "p1" if i < 3 else "p2"),
                      T("memory_mb", T.INT_TYPE, 512 * (i + 1)),
                      T("launched_at", T.DATETIME_TYPE, BASE)])
        for i in range(5)
    ])
    conn.dispose()
    path = tmp_path / "c.conf"
    path.write_text(f"[database]\nconnection = {db_url}\n")
    return path


def run(conf: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--config-file", str(conf), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_filters_and_pages(conf_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(conf_file, capsys, "--format", "json", "list",
                       "--trait", "memory_mb:int>=1024", "--project", "p1")
    assert code == 0
    assert [e["message_id"] for e in json.loads(out)] == ["msg-1", "msg-2"]

    code, out, _ = run(conf_file, capsys, "--format", "json", "list", "--sort", "generated:desc",
                       "--limit", "2", "--marker", "msg-3")
    assert [e["message_id"] for e in json.loads(out)] == ["msg-2", "msg-1"]

    code, out, _ = run(conf_file, capsys, "list", "--event-type", "volume.create.end",
                       "--end", "2025-06-01T12:02:00.250000")
    lines = out.splitlines()
    assert lines[0].split() == ["GENERATED", "EVENT_TYPE", "MESSAGE_ID", "TRAITS"]
    assert [line.split()[-2] for line in lines[1:]] == ["msg-0", "msg-2"]


def test_show_types_traits(conf_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(conf_file, capsys, "--format", "json", "show", "msg-4")
    event = json.loads(out)
    assert code == 0 and event["generated"] == "2025-06-01T12:04:00.250000"
    assert event["traits"] == [
        {"name": "launched_at", "type": "datetime", "value": "2025-06-01T12:00:00.250000"},
        {"name": "memory_mb", "type": "int", "value": 2560},
        {"name": "project_id", "type": "text", "value": "p2"},
    ]
    code, out, _ = run(conf_file, capsys, "show", "msg-4")
    assert "memory_mb    int       2560" in out

    code, out, _ = run(conf_file, capsys, "types")
    assert out.split() == ["compute.instance.create.end", "volume.create.end"]
    code, out, _ = run(conf_file, capsys, "--format", "json", "traits", "volume.create.end",
                       "--name", "memory_mb")
    assert sorted(t["value"] for t in json.loads(out)) == [512, 1536, 2560]


def test_unknown_message_id_exits_1(conf_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(conf_file, capsys, "show", "nope")
    assert code == 1 and out == "" and "nope" in err


def test_unknown_marker_is_an_error_not_a_crash(
        conf_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(conf_file, capsys, "list", "--marker", "nope")
    assert code == 1 and "nope" in err


def test_the_command_prints_what_was_asked_and_nothing_else(conf_file: Path) -> None:
    """As a user runs it: no INFO lines of the libraries it loads on stderr,
    and --format after the command as before it."""
    exe = Path(sys.executable).with_name("panko-collector-events")
    outputs = {}
    for argv in (["types"], ["traits", "volume.create.end"], ["list", "--format", "json"],
                 ["--format", "json", "list"], ["show", "msg-1", "--format", "json"]):
        done = subprocess.run([str(exe), "--config-file", str(conf_file), *argv],
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (0, ""), argv
        outputs[" ".join(argv)] = done.stdout
    assert outputs["list --format json"] == outputs["--format json list"]
    assert len(json.loads(outputs["list --format json"])) == 5
    assert json.loads(outputs["show msg-1 --format json"])["message_id"] == "msg-1"
