"""The benchmark suite at its tiny scale: every figure comes with a baseline.

This checks what the suite reports, never how fast anything ran. The tiny scale still
starts several emulators and child processes, about two minutes on 2 busy cores, so
the test is marked slow.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


@pytest.mark.slow
def test_tiny_suite_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "suite.json"
    completed = subprocess.run(
        [sys.executable, str(BENCH / "suite.py"), "--scale", "tiny", "--json", str(output)],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    document = json.loads(output.read_text())

    sys.path.insert(0, str(BENCH))
    try:
        import suite
    finally:
        sys.path.remove(str(BENCH))
    measured = {figure["benchmark"] for figure in document["figures"]}
    skipped = {entry["name"]: entry["reason"] for entry in document["skipped"]}
    assert measured | set(skipped) == set(suite.BENCHMARKS)
    assert not measured & set(skipped)
    for name, reason in skipped.items():
        assert suite.BENCHMARKS[name][1], f"{name} was skipped but needs no corpus: {reason}"
        assert "corpus" in reason

    names = [figure["name"] for figure in document["figures"]]
    assert len(names) == len(set(names))
    for figure in document["figures"]:
        assert figure["baseline_name"], figure["name"]
        assert math.isfinite(figure["value"]), figure["name"]
        assert figure["baseline"] > 0, figure["name"]
        assert math.isfinite(figure["ratio"]), figure["name"]
        assert figure["ratio_meaning"], figure["name"]
        assert figure["met"] in (True, False, None), figure["name"]
        # The table printed on standard output carries the same row.
        assert f"| {figure['name']} |" in completed.stdout
