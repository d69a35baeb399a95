"""The Dagster code location: ``dagster dev`` loads ``defs`` from here."""

import dagster as dg

from pipelines.assets import mailbox_archive
from pipelines.deployments import resources_for
from pipelines.sensors import mailbox_directory_sensor

defs = dg.Definitions(
    assets=[mailbox_archive],
    sensors=[mailbox_directory_sensor],
    resources=resources_for(),
)
