"""The linters the project is held to, run as part of the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))

    result = _run(ruff, "check", "m365lake", "pipelines", "tests", "bench")

    assert result.returncode == 0, result.stdout[-4000:]


def test_mypy_strict_on_library():
    result = _run(sys.executable, "-m", "mypy")

    assert result.returncode == 0, result.stdout[-4000:]
