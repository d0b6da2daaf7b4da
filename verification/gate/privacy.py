"""What a gate run writes and shows stays private: files its owner's alone, passwords masked.

Registered by the gate's plugin on the controller and on every xdist worker when the gate runs:

* the process runs under a umask of 077 (`migrator.private`), so the sign-off, the scratch
  target, the save-latency copies and pytest's own `--junitxml` are 0600 in 0700 folders;
* every test report has the target URL's password masked before anything reads it: pytest shows
  the arguments of the frames of a traceback (`target = 'postgresql://u:pw@...'`), and a driver's
  frame holds its DSN. The terminal, `--junitxml`, xdist's controller and the sign-off all read
  the reports, so masking them here covers each; so is the usage error of an argument pytest
  cannot collect.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Generator
from typing import Any

import pytest

from migrator.private import PRIVATE_UMASK
from migrator.redaction import mask_secrets

PRIVACY_PLUGIN = "ksi-gate-privacy"


class GatePrivacy:
    """A pytest plugin; `secrets` are the passwords of the URLs the gate was given, and
    `json_attributes` the report attributes that hold JSON text (the gate's results)."""

    def __init__(self, secrets: set[str], json_attributes: tuple[str, ...]) -> None:
        self.secrets = secrets
        self.json_attributes = json_attributes
        self.previous_umask = os.umask(PRIVATE_UMASK)

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # the outermost wrapper: it sees the finished report
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        mask_report(report, self.secrets, self.json_attributes)
        return report

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> Generator[None, Any, Any]:
        """pytest refuses an argument it cannot collect by echoing it (`file or directory not
        found: postgresql://u:pw@...`, a URL given without `--ksi-target`): masked too."""
        try:
            return (yield)
        except pytest.UsageError as exc:
            raise pytest.UsageError(*(mask_secrets(str(arg), self.secrets) for arg in exc.args)) from None

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        os.umask(self.previous_umask)


def mask_report(report: pytest.TestReport, secrets: set[str], json_attributes: tuple[str, ...] = ()) -> None:
    """Mask every text a report shows: its traceback (function arguments included), its captured
    output, and the JSON a plugin put on it (masked value by value, so the JSON stays valid)."""
    report.longrepr = masked(report.longrepr, secrets)
    report.sections = masked(report.sections, secrets)
    for name in json_attributes:
        text = getattr(report, name, None)
        if isinstance(text, str):
            setattr(report, name, json.dumps(masked(json.loads(text), secrets)))


def masked(value: Any, secrets: set[str]) -> Any:
    """`value` with every string in it masked: pytest's tracebacks are trees of dataclasses,
    lists and tuples of strings. Anything else is returned as it is."""
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if isinstance(value, list | tuple):
        items = [masked(item, secrets) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {key: masked(item, secrets) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for name, item in list(vars(value).items()):
            setattr(value, name, masked(item, secrets))
    return value
