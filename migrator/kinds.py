"""The registry of blob kinds: each legacy table's name to the module pair that maps it."""

from __future__ import annotations

from migrator import checkpoints, sessions
from migrator.relational import BlobKind

KINDS: dict[str, BlobKind] = {kind.legacy.name: kind for kind in (checkpoints.KIND, sessions.KIND)}
