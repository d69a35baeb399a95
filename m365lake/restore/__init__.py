"""Restore archived mail and files to the tenant: select, plan, execute, verify."""
