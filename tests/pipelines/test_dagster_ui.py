"""The Dagster UI in headless Chromium: the code location loads, assets and partitions show.

The instance is set up the way the demo does it: partitions come from the emulated
tenant's directory through the directory sensor, and one mailbox is backed up through
its asset. The webserver then serves that instance from a temporary DAGSTER_HOME with
the project's dagster.yaml, and the pages are checked in the DOM Chromium rendered.
Screenshots are kept under ``test-artifacts/dagster-ui`` (or ``M365LAKE_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from pipelines.assets import mailbox_archive
from pipelines.deployments import resources_for
from pipelines.partitions import mailbox_partitions
from pipelines.sensors import mailbox_directory_sensor
from tests.pipelines.dagster_ui import Chromium, DagsterWebserver, find_chromium, visible_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCATION = "m365lake"
"""Code location name from ``[tool.dagster]`` in pyproject.toml, which the webserver reads."""

# What the UI shows instead of the pages' content when a code location or query fails.
ERROR_MARKERS = (
    "View error",
    "This graph is empty",
    "There are no known materialized assets",
    "PythonError",
    "Unexpected GraphQL error",
    "Something went wrong",
    "An error occurred",
)
RENDER_ATTEMPTS = 3


@dataclass
class DemoInstance:
    home: Path
    users: list[str]


@pytest.fixture
def artifacts_dir() -> Path:
    configured = os.environ.get("M365LAKE_TEST_ARTIFACTS")
    root = Path(configured) if configured else PROJECT_ROOT / "test-artifacts"
    folder = root / "dagster-ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def chromium(tmp_path: Path) -> Chromium:
    executable = find_chromium()
    if executable is None:
        message = (
            "Chromium not found: install Debian's chromium package (./run test does so "
            "when run as root) or set M365LAKE_CHROMIUM"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Chromium(executable, tmp_path / "chromium-profile")


@pytest.fixture
def demo_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DemoInstance:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    tenant = Tenant.from_seed(generate_tenant(seed=11, users=2, messages_per_user=6))
    with (
        EmulatorServer(tenant, tmp_path / "emulator") as emulator,
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        for name, value in emulator.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
        resources = resources_for("emulator")

        context = dg.build_sensor_context(instance=instance, resources=resources)
        for request in mailbox_directory_sensor(context).dynamic_partitions_requests:
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        assert mailbox_partitions.name is not None
        users = sorted(instance.get_dynamic_partitions(mailbox_partitions.name))
        assert len(users) == 2, "the emulated directory has two mailboxes"

        outcome = dg.materialize(
            [mailbox_archive], partition_key=users[0], instance=instance, resources=resources
        )
        assert outcome.success
    return DemoInstance(home=home, users=users)


@pytest.fixture
def webserver(demo_instance: DemoInstance, tmp_path: Path) -> Iterator[DagsterWebserver]:
    with DagsterWebserver(PROJECT_ROOT, demo_instance.home, tmp_path / "webserver.log") as server:
        yield server


def _render(chromium: Chromium, webserver: DagsterWebserver, path: str, expected: list[str]) -> str:
    """Return the page's visible text once every expected string is in it.

    A page is loaded again when something is missing: on a busy machine the UI can still
    be waiting for a query when the virtual time budget runs out.
    """
    text = ""
    for _ in range(RENDER_ATTEMPTS):
        text = visible_text(chromium.dump_dom(f"{webserver.url}{path}"))
        errors = [marker for marker in ERROR_MARKERS if marker in text]
        assert not errors, (
            f"{path} shows {errors}: {text[:2000]}\nwebserver output: {webserver.log_tail()}"
        )
        if all(name in text for name in expected):
            return text
    missing = [name for name in expected if name not in text]
    raise AssertionError(f"{path} does not show {missing} after {RENDER_ATTEMPTS} loads: {text}")


def test_ui_shows_assets_and_partitions(
    chromium: Chromium,
    webserver: DagsterWebserver,
    demo_instance: DemoInstance,
    artifacts_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    locations = _render(chromium, webserver, "/locations", [LOCATION])
    assert "Loaded" in locations, f"the code location did not load: {locations}"

    lineage = _render(chromium, webserver, "/asset-groups", ["mail", "files", "search"])
    assert "retention" in lineage

    catalog = _render(
        chromium,
        webserver,
        "/assets",
        ["mailbox_archive", "drive_archive", "search_index", "retention_plan", "retention_purge"],
    )
    assert "2 partitions" in catalog

    mail_group = f"/locations/__repository__@{LOCATION}/asset-groups/mail"
    _render(chromium, webserver, mail_group, ["mailbox_archive"])

    partitions_page = "/assets/mailbox_archive?view=partitions"
    partitions = _render(chromium, webserver, partitions_page, demo_instance.users)
    assert "Materialized (1)" in partitions
    assert "Missing (1)" in partitions

    shots = [
        chromium.screenshot(f"{webserver.url}{mail_group}", artifacts_dir / "mail-lineage.png"),
        chromium.screenshot(
            f"{webserver.url}{partitions_page}", artifacts_dir / "mailbox-partitions.png"
        ),
    ]
    with capsys.disabled():
        for shot in shots:
            print(f"\nDagster UI screenshot: {shot}")


def test_ui_check_fails_on_broken_location(
    chromium: Chromium, tmp_path: Path, demo_instance: DemoInstance
) -> None:
    broken = tmp_path / "broken_definitions.py"
    broken.write_text('raise RuntimeError("the definitions failed to import")\n')

    with DagsterWebserver(
        PROJECT_ROOT, demo_instance.home, tmp_path / "broken.log", ("-f", str(broken))
    ) as server:
        with pytest.raises(AssertionError, match="View error"):
            _render(chromium, server, "/locations", [broken.name])
        with pytest.raises(AssertionError, match="This graph is empty"):
            _render(chromium, server, "/asset-groups", ["mail"])
