"""The daemon's store through the migration: one API over the legacy JSON and the relational rows.

    store = open_store("ksi.db", mode="shadow")   # or KSI_STORE_MODE=shadow in the environment
    checkpoint_id = store.save_checkpoint(blob)
    store.get_session("agent:conv")
    await store.aio.load_checkpoint(checkpoint_id)   # from the daemon's asyncio loop

Writes. While the legacy tables exist they are written exactly as the daemon wrote them, and
they stay the record the catch-up backfill reads. The relational rows of the same legacy row are
written through `relational.write_legacy_rows`, keyed by the legacy rowid and digest, so the
backfill sees them as up to date. When both sides live in one SQLite file they commit in one
transaction; when the relational write fails the legacy write still commits, and the failure is
recorded as a pending repair (with a log warning) until a catch-up makes the sides equal again.

Reads follow the mode (`Mode`). Every read hands out the JSON object the legacy table
would hold, `json.loads` of the blob.

Threads. Each thread gets its own SQLite connection (peewee's default); writes are serialised by
one lock per store and take SQLite's write lock up front (`BEGIN IMMEDIATE`). The models are
bound to the store's own target in each of its calls (`models.bound_to`), so stores on
different targets can share a process, and opening another target redirects none of them.
"""

from __future__ import annotations

from migrator.store.aio import AsyncStore
from migrator.store.common import KEPT_CHECKPOINTS, MODE_VARIABLE, Blob, Mode, SessionRecord, blob_of, timestamp_utc
from migrator.store.core import Store
from migrator.store.opening import open_store
from migrator.store.report import PendingRepair, ShadowMismatch, StoreReport

__all__ = [
    "KEPT_CHECKPOINTS",
    "MODE_VARIABLE",
    "AsyncStore",
    "Blob",
    "Mode",
    "PendingRepair",
    "SessionRecord",
    "ShadowMismatch",
    "Store",
    "StoreReport",
    "blob_of",
    "open_store",
    "timestamp_utc",
]
