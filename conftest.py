"""Repository-wide pytest set-up.

The gate, the engine fixtures and the hypothesis profiles come from the package's own pytest
plugin (`verification/pytest_plugin.py`, its `pytest11` entry point), loaded because the package
is installed (`pip install -e '.[test]'`); nothing here registers them again.
"""

from __future__ import annotations

import pytest

from verification.fuzzing import load_default_profile

pytest_plugins = ["pytester"]  # tests/test_gate.py runs the gate in a subprocess


def pytest_configure(config: pytest.Config) -> None:
    load_default_profile(config)  # `dev` unless --hypothesis-profile chose another
