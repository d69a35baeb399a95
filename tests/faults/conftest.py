"""Hooks of the fault campaign: its totals in the terminal summary, quiet injected cuts."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.faults.campaign import CAMPAIGN_SUMMARY


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    line = config.stash.get(CAMPAIGN_SUMMARY, None)
    if line is not None:
        terminalreporter.write_sep("-", "fault campaign")
        terminalreporter.write_line(line)


class _DropCutResponses(logging.Filter):
    """Drop uvicorn's error line for a response the emulator cut on purpose.

    A reset or truncated response ends without its last body part, which uvicorn logs as
    an error once per injected fault. Every other uvicorn error still shows.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


@pytest.fixture(autouse=True)
def quiet_cut_responses() -> Iterator[None]:
    uvicorn_errors = logging.getLogger("uvicorn.error")
    dropper = _DropCutResponses()
    uvicorn_errors.addFilter(dropper)
    yield
    uvicorn_errors.removeFilter(dropper)
