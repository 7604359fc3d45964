"""Every installed command answers --version and --help."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from panko_collector import __version__
from tests.conftest import REPO

SCRIPTS = sorted(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_version_and_help(script: str) -> None:
    exe = Path(sys.executable).parent / script
    assert exe.exists(), f"{script} is not installed beside {sys.executable}"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert version.returncode == 0, version.stderr
    assert __version__ in version.stdout + version.stderr
    usage = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert usage.returncode == 0 and "usage:" in usage.stdout, usage.stderr
