"""pytest set-up for `verification/`: the harness's helpers live in `verification.harness`."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The suite's default hypothesis profile. The repository's root conftest does this too; an
    # installed package (`--pyargs verification`) has only this one, and the gate alone may run
    # where hypothesis is not installed (then the fuzzing plugin is not loaded).
    if config.pluginmanager.has_plugin("verification.fuzzing"):
        from verification.fuzzing import load_default_profile

        load_default_profile(config)
