"""The benchmark suite: every figure comes with a baseline, and how rates are counted.

These tests check what the suite reports, never how fast anything ran. The tiny scale
still starts several emulators and child processes, 75 to 90 s on 2 busy cores, so that
test is marked slow.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def _suite_module() -> ModuleType:
    """Import bench/suite.py, which imports its sibling scripts by their bare names."""
    sys.path.insert(0, str(BENCH))
    try:
        import suite
    finally:
        sys.path.remove(str(BENCH))
    return suite


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

    suite = _suite_module()
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


def test_whole_window_rate_leaves_out_the_tail() -> None:
    suite = _suite_module()
    # A full budget of 10 at the start of each 10 s window, the last one at 20 s: the
    # burst at 20 s begins a third window that the run did not finish.
    times = [0.0] * 10 + [10.0] * 10 + [20.0] * 10
    rate, windows = suite.whole_window_rate(times, [1.0] * len(times), 10.0)
    assert windows == 2
    assert rate == 1.0


def test_whole_window_rate_shorter_than_a_window() -> None:
    suite = _suite_module()
    assert suite.whole_window_rate([0.0, 3.0], [2.0, 2.0], 10.0) == (0.0, 0)


def test_drive_of_request_paths() -> None:
    suite = _suite_module()
    assert suite.drive_of("/v1.0/drives/b!abc/root/delta") == "b!abc"
    assert suite.drive_of("/v1.0/users/u1/drives") is None
    assert suite.drive_of("/v1.0/sites") is None
