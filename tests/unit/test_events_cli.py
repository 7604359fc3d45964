"""Argument parsing of panko-collector-events (no database needed)."""

from __future__ import annotations

import argparse
import datetime

import pytest

from panko_collector.cmd import events


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("state=active", {"key": "state", "op": "eq", "string": "active"}),
        ("state==active", {"key": "state", "op": "eq", "string": "active"}),
        ("state!=deleted", {"key": "state", "op": "ne", "string": "deleted"}),
        ("memory_mb:int>=512", {"key": "memory_mb", "op": "ge", "integer": 512}),
        ("disk_gb:int<20", {"key": "disk_gb", "op": "lt", "integer": 20}),
        ("load:float>0.5", {"key": "load", "op": "gt", "float": 0.5}),
        ("name:text<=m", {"key": "name", "op": "le", "string": "m"}),
        ("note=a=b", {"key": "note", "op": "eq", "string": "a=b"}),
        (
            "launched_at:datetime>2024-01-02T03:04:05+01:00",
            {"key": "launched_at", "op": "gt", "datetime": datetime.datetime(2024, 1, 2, 2, 4, 5)},
        ),
    ],
)
def test_trait_conditions(text: str, expected: dict[str, object]) -> None:
    assert events.trait_condition(text) == expected


@pytest.mark.parametrize(
    "text", ["state", "=active", "memory_mb:integer=5", "memory_mb:int=lots", "x:datetime=soon"]
)
def test_bad_trait_conditions_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        events.trait_condition(text)


def test_bad_arguments_exit_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["list", "--trait", "oops"], ["list", "--limit", "0"], ["list", "--sort", "size"],
                 ["frobnicate"], []):
        with pytest.raises(SystemExit) as exc:
            events.build_parser().parse_args(argv)
        assert exc.value.code == 2
        assert "usage:" in capsys.readouterr().err


def test_sort_and_times() -> None:
    assert events.sort_key("generated:desc") == ("generated", "desc")
    assert events.sort_key("message_id") == ("message_id", "asc")
    assert events.utc_datetime("2024-05-06") == datetime.datetime(2024, 5, 6)
    assert events.utc_datetime("2024-05-06 10:00:00-02:00") == datetime.datetime(2024, 5, 6, 12)


def test_table_aligns_columns() -> None:
    text = events.table(("A", "BB", "C"), [("xxx", "y", "last column"), ("", "zzzz", "")])
    assert text.splitlines() == ["A    BB    C", "xxx  y     last column", "     zzzz"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["list"], "table"),
    (["list", "--format", "json"], "json"),
    (["--format", "json", "list"], "json"),
    (["--format", "json", "show", "m"], "json"),
    (["types", "--format", "json"], "json"),
    (["traits", "t", "--format", "json", "--name", "n"], "json"),
])
def test_format_before_or_after_the_command(argv: list[str], expected: str) -> None:
    assert events.build_parser().parse_args(argv).format == expected
