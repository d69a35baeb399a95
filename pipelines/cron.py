"""Cron expressions of the schedules, each overridable by an environment variable.

They are read when the code location loads, because an administrator tunes them per
deployment rather than per code change. After changing one, reload the code location.
"""

import os


def cron_from_env(variable: str, default: str) -> str:
    """Return the cron expression in ``variable``, or ``default`` when it is unset or empty.

    Only the field count is checked here, so the error can name the variable. Dagster
    rejects a bad field value, such as minute 99, when it builds the schedule.
    """
    cron = os.environ.get(variable, "").strip() or default
    if len(cron.split()) != 5:
        raise ValueError(
            f"{variable} is {cron!r}, which is not a valid cron expression; "
            f"use five fields such as {default!r} (the default) or unset it"
        )
    return cron
