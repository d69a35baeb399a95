"""The Dagster code location: ``dagster dev`` loads ``defs`` from here."""

import dagster as dg

from pipelines.assets import drive_archive, mailbox_archive
from pipelines.deployments import resources_for
from pipelines.schedules import drive_backup_schedule, mailbox_backup_schedule
from pipelines.search import search_index
from pipelines.sensors import drive_directory_sensor, mailbox_directory_sensor

defs = dg.Definitions(
    assets=[mailbox_archive, drive_archive, search_index],
    sensors=[mailbox_directory_sensor, drive_directory_sensor],
    schedules=[mailbox_backup_schedule, drive_backup_schedule],
    resources=resources_for(),
)
