"""Dynamic partitions: one per mailbox and one per drive."""

import dagster as dg

mailbox_partitions = dg.DynamicPartitionsDefinition(name="mailboxes")

drive_partitions = dg.DynamicPartitionsDefinition(name="drives")
"""One per OneDrive or site library, keyed by Graph drive id (names change, ids do not)."""
