"""The Dagster code location: ``dagster dev`` loads ``defs`` from here."""

import dagster as dg

from pipelines.assets import drive_archive, mailbox_archive
from pipelines.calendar import calendar_archive, calendar_backup_schedule
from pipelines.checks import BACKUP_CHECKS
from pipelines.contacts import contacts_archive, contacts_backup_schedule
from pipelines.deployments import resources_for
from pipelines.integrity_checks import ARCHIVE_INTEGRITY_CHECKS
from pipelines.overview import archive_overview, archive_overview_job, archive_overview_schedule
from pipelines.restore import restore_job
from pipelines.retention import (
    audit_trail_compaction,
    no_held_version_in_plan,
    retention_job,
    retention_plan,
    retention_purge,
    retention_schedule,
)
from pipelines.schedules import drive_backup_schedule, mailbox_backup_schedule
from pipelines.search import search_index, search_index_optimize_schedule, search_index_schedule
from pipelines.sensors import drive_directory_sensor, mailbox_directory_sensor
from pipelines.teams import team_directory_sensor, teams_archive, teams_backup_schedule

defs = dg.Definitions(
    assets=[
        mailbox_archive,
        drive_archive,
        teams_archive,
        contacts_archive,
        calendar_archive,
        archive_overview,
        search_index,
        retention_plan,
        retention_purge,
        audit_trail_compaction,
    ],
    asset_checks=[no_held_version_in_plan, *BACKUP_CHECKS, *ARCHIVE_INTEGRITY_CHECKS],
    jobs=[retention_job, restore_job, archive_overview_job],
    sensors=[mailbox_directory_sensor, drive_directory_sensor, team_directory_sensor],
    schedules=[
        mailbox_backup_schedule,
        drive_backup_schedule,
        teams_backup_schedule,
        contacts_backup_schedule,
        calendar_backup_schedule,
        retention_schedule,
        search_index_schedule,
        search_index_optimize_schedule,
        archive_overview_schedule,
    ],
    resources=resources_for(),
)
