"""The shipped systemd units are valid and name commands this project installs."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO, missing

UNITS = sorted((REPO / "systemd").glob("panko-collector*.service")) + sorted(
    (REPO / "systemd").glob("*.timer")
)
BIN = "/usr/local/bin/"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def project_scripts() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(meta["project"]["scripts"])


def test_every_command_is_one_we_install() -> None:
    scripts = project_scripts()
    for path in UNITS:
        for key in ("ExecStart", "ExecReload"):
            for line in unit(path).get("Service", key, fallback="").splitlines():
                if not line.strip():
                    continue
                command = line.split()[0]
                if command.startswith(BIN):
                    assert command.removeprefix(BIN) in scripts, (path.name, command)
                else:
                    assert Path(command).exists(), (path.name, command)


def test_daemon_unit_is_notify_unprivileged_and_sandboxed() -> None:
    service = unit(REPO / "systemd" / "panko-collector.service")["Service"]
    assert service["Type"] == "notify"
    assert service["User"] not in ("", "root") and "DynamicUser" not in service
    assert service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "true"
    assert service["PrivateTmp"] == "true" and service["StateDirectory"]
    # systemd must wait longer than the daemon's own graceful shutdown.
    assert int(service["TimeoutStopSec"]) > 60


def test_timer_starts_the_expirer_service() -> None:
    timer = REPO / "systemd" / "panko-collector-expirer.timer"
    assert timer.exists() and (REPO / "systemd" / "panko-collector-expirer.service").exists()
    assert unit(timer)["Timer"]["OnCalendar"]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verify copies whose commands point at the ones installed beside this Python."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze")
    bindir = Path(sys.executable).parent
    for path in UNITS:
        text = path.read_text()
        for script in project_scripts():
            if f"{BIN}{script} " in text:
                if not (bindir / script).exists():
                    pytest.fail(f"{script} is not installed in {bindir}")
                text = text.replace(f"{BIN}{script} ", f"{bindir / script} ")
        (tmp_path / path.name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / p.name) for p in UNITS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_api_unit_is_unprivileged_and_sandboxed() -> None:
    service = unit(REPO / "systemd" / "panko-collector-api.service")["Service"]
    assert service["ExecStart"].split()[0] == f"{BIN}panko-collector-api"
    assert service["Type"] == "notify"
    assert service["User"] not in ("", "root") and "DynamicUser" not in service
    assert service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "true"
    assert service["PrivateTmp"] == "true" and service["CapabilityBoundingSet"] == ""
    # gunicorn's master must be the one signalled, to stop its workers in order.
    assert service["KillMode"] == "mixed"
