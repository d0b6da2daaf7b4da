"""Project-wide pytest set-up: the hypothesis profiles, registered once, chosen with
hypothesis's own `--hypothesis-profile` option.

* `dev` (the default): fast, for local runs.
* `ci`: derandomised and bounded, so the full suite is reproducible and stays inside CI's time.
* `nightly`: thousands of examples a test, no deadline, and a persistent example database in
  `.hypothesis/nightly/` so that a failure found at night replays the next morning.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

pytest_plugins = ["pytester", "verification.gate.plugin", "verification.engines"]

NIGHTLY_DATABASE = Path(os.environ.get("KSI_NIGHTLY_DB", Path(__file__).parent / ".hypothesis" / "nightly"))

settings.register_profile(
    "dev",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "nightly",
    # Hypothesis has no time budget; size the night with KSI_NIGHTLY_EXAMPLES and bound it with `timeout`.
    max_examples=int(os.environ.get("KSI_NIGHTLY_EXAMPLES", "5000")),
    deadline=None,
    database=DirectoryBasedExampleDatabase(NIGHTLY_DATABASE),
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
