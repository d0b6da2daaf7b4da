"""How long runs go: batches of legacy rows, and the progress they report."""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_BATCH_SIZE = 2000
"""Legacy rows a batch (and a write transaction) holds by default; the bytes a batch holds are
bounded too (`legacy.BATCH_BYTES`), so large blobs never make a batch large."""

Progress = Callable[[str, int], None]
"""Called with (legacy table name, rows just handled) as a long run goes."""
