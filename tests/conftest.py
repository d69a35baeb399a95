"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# botocore's credential chain ends by asking the EC2 instance metadata address; tests
# talk to loopback servers only, so that step is switched off for every test.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

# The shared real-data corpus sits next to the checkout (../shared/corpus); tests never
# copy it into the repository.
_DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus_root() -> Path:
    """Return the real-data corpus folder, or skip the test when it is absent.

    Set M365LAKE_CORPUS to use a corpus somewhere else.
    """
    configured = os.environ.get("M365LAKE_CORPUS")
    root = Path(configured) if configured else _DEFAULT_CORPUS
    if not (root / "mail").is_dir():
        pytest.skip(f"corpus not found at {root.resolve()} (set M365LAKE_CORPUS)")
    return root.resolve()
