"""The m365lake data lake: Parquet tables, content-addressed blobs and a manifest chain."""

from m365lake.lake.blobs import BlobStore, BlobWriter, ContentRef
from m365lake.lake.lake import DEFAULT_INLINE_THRESHOLD, Lake
from m365lake.lake.leases import Lease, LeaseHeldError
from m365lake.lake.tables import SCHEMAS, build_batch, table_schema
from m365lake.lake.transaction import Transaction

__all__ = [
    "DEFAULT_INLINE_THRESHOLD",
    "SCHEMAS",
    "BlobStore",
    "BlobWriter",
    "ContentRef",
    "Lake",
    "Lease",
    "LeaseHeldError",
    "Transaction",
    "build_batch",
    "table_schema",
]
