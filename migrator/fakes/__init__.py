"""Fake KSI data: a faker provider and builders of the JSON blobs the daemon stored.

Two layers:

* `KsiProvider` (`provider`) adds `ksi_*` methods to a Faker, one realistic value per call.
* `fake_checkpoint_blob` (`checkpoint_blobs`) and `fake_session_blob` (`session_blobs`) assemble
  whole blobs in every shape of the catalogue of legacy formats (`migrator.formats`): each daemon
  era, queue and session shape, tool form, later key and timestamp spelling. They draw faker
  values once into pools (one set of pools per Faker) and then pick from them with a
  caller-supplied `random.Random`, because calling Faker for every value is far too slow for
  million-row snapshots. `values` holds what they draw from; `context` the per-blob choices.

Everything is deterministic given the Faker seed and the state of the `random.Random`.
Dicts are built in the order the daemon would have written them and are never sorted,
because key order is part of what a lossless migration must keep.
"""

from migrator.fakes.checkpoint_blobs import fake_checkpoint_blob
from migrator.fakes.provider import KsiProvider, make_faker
from migrator.fakes.session_blobs import fake_session_blob
from migrator.fakes.values import (
    BASE_DATE,
    CLAUDE_TOOLS,
    EVENT_NAMES,
    KSI_TOOLS,
    LOCAL_SHIFTS,
    MODEL_NAMES,
    PROFILES,
    SPAN,
    epoch_seconds,
    format_timestamp,
    pick,
    random_conversation_id,
    random_moment,
)

__all__ = [
    "BASE_DATE",
    "CLAUDE_TOOLS",
    "EVENT_NAMES",
    "KSI_TOOLS",
    "LOCAL_SHIFTS",
    "MODEL_NAMES",
    "PROFILES",
    "SPAN",
    "KsiProvider",
    "epoch_seconds",
    "fake_checkpoint_blob",
    "fake_session_blob",
    "format_timestamp",
    "make_faker",
    "pick",
    "random_conversation_id",
    "random_moment",
]
