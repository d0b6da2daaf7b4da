"""What a gate run writes stays private: the process runs under a umask of 077 (`migrator.private`),
so the sign-off, the scratch target, the save-latency copies and pytest's own `--junitxml` are
0600 in 0700 folders. Registered by the gate's plugin on the controller and on every xdist worker
when the gate runs.
"""

from __future__ import annotations

import os

import pytest

from migrator.private import PRIVATE_UMASK

PRIVACY_PLUGIN = "ksi-gate-privacy"


class GatePrivacy:
    """A pytest plugin: files the gate run creates are its owner's alone."""

    def __init__(self) -> None:
        self.previous_umask = os.umask(PRIVATE_UMASK)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        os.umask(self.previous_umask)
