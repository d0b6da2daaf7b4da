"""pytest set-up for `verification/`: the harness's helpers live in `verification.harness`."""

from __future__ import annotations

from pathlib import Path

import pytest

from verification.gate.options import SNAPSHOT_OPTION


def pytest_configure(config: pytest.Config) -> None:
    # The suite's default hypothesis profile. The repository's root conftest does this too; an
    # installed package (`--pyargs verification`) has only this one, and the gate alone may run
    # where hypothesis is not installed (then the fuzzing plugin is not loaded).
    if config.pluginmanager.has_plugin("verification.fuzzing"):
        from verification.fuzzing import load_default_profile

        load_default_profile(config)


def suite_cannot_run(config: pytest.Config) -> bool:
    """No snapshot, so the generative suite is asked for, and no hypothesis to run it (a gate-only install)."""
    return not config.pluginmanager.has_plugin("verification.fuzzing") and not config.getoption(SNAPSHOT_OPTION)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # Not one import error for each module of the suite: the one line below says what is missing.
    return True if suite_cannot_run(config) and collection_path.name.startswith("test_") else None


def pytest_collection_finish(session: pytest.Session) -> None:
    if suite_cannot_run(session.config):
        raise pytest.UsageError(
            f"no {SNAPSHOT_OPTION}: without it `verification` runs the generative suite, which needs "
            f"hypothesis (pip install 'ksi-migrator[test]'); to sign off a snapshot, give {SNAPSHOT_OPTION} LEGACY.db"
        )
