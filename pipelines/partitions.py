"""Dynamic partitions: one per mailbox, keyed by user principal name."""

import dagster as dg

mailbox_partitions = dg.DynamicPartitionsDefinition(name="mailboxes")
