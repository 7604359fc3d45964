"""Virtual environments of their own for programs that the tests run but
panko-collector never imports (Ceilometer's converter as an oracle, Keystone
as a real identity service), installed from PyPI once and cached between runs.

An environment lives in ``$XDG_CACHE_HOME/panko-collector/<name>`` (or
``~/.cache/...``), unless an environment variable names another folder. A
stamp file records what it was built from (versions, the pinned requirements,
the Python version); any change rebuilds it. A file lock beside it makes
concurrent test runs wait for one build instead of racing two.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_STAMP = "panko-collector.stamp"


def cache_dir(name: str, override_env: str) -> Path:
    """``$override_env`` if set, else the shared cache folder ``name``."""
    explicit = os.environ.get(override_env)
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "panko-collector" / name


def fingerprint(*parts: str | bytes) -> str:
    """A digest of what an environment is built from, and of this Python."""
    digest = hashlib.sha256()
    for part in (*parts, sys.version):
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def tail(proc: subprocess.CompletedProcess[str], lines: int = 8) -> str:
    """The end of a command's output, without pip's noise about absent local indexes."""
    text = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "is ignored: it is neither a file nor a directory" not in line]
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class SideVenv:
    """A cached virtual environment: ``path``, built from what ``stamp`` digests,
    usable when ``probe`` (Python source) runs in it without error."""

    path: Path
    stamp: str
    probe: str

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``pip install ARGS`` in the environment; never raises, the caller reads the result."""
        return subprocess.run(
            [str(self.python), "-m", "pip", "install", "--quiet", "--retries", "2",
             "--disable-pip-version-check", *args],
            capture_output=True, text=True, timeout=900, check=False)

    def usable(self) -> bool:
        stamp = self.path / _STAMP
        if not stamp.is_file() or stamp.read_text().strip() != self.stamp:
            return False
        check = subprocess.run([str(self.python), "-c", self.probe],
                               capture_output=True, timeout=120, check=False)
        return check.returncode == 0

    def ensure(self, install: Callable[[SideVenv], None]) -> tuple[bool, float]:
        """Make the environment usable; return (whether it was built, seconds taken).

        ``install`` fills a fresh environment; it calls ``missing()`` when PyPI
        cannot provide a package (skip locally, fail in CI). An environment
        that was installed but still fails ``probe`` fails the test: its
        pinned requirements lack a library.
        """
        started = time.monotonic()
        with _locked(self.path.parent / f".{self.path.name}.lock"):
            if self.usable():
                return False, time.monotonic() - started
            shutil.rmtree(self.path, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(self.path)],
                           check=True, timeout=300)
            try:
                install(self)
            except BaseException:
                shutil.rmtree(self.path, ignore_errors=True)
                raise
            (self.path / _STAMP).write_text(self.stamp + "\n")
            if not self.usable():
                pytest.fail(f"the environment {self.path} was installed but cannot run "
                            f"{self.probe!r}: its pinned requirements lack a library",
                            pytrace=False)
            return True, time.monotonic() - started
