"""The pre-cutover sign-off gate: a pytest plugin that proves a snapshot migrates exactly.

`pytest verification/ --ksi-snapshot LEGACY.db` migrates the snapshot into a scratch target (or
checks `--ksi-target`), runs the gate's checks as ordinary tests that spread over `-n auto`, and
writes `signoff.json` and `signoff.md`. Without `--ksi-snapshot` the gate collects nothing.

* `options.py`: the command-line options and their validation.
* `checks.py`, `performance.py`, `schema.py`: the checks, as plain functions returning `CheckResult`.
* `test_signoff.py`: the gate's tests, one thin test per check (or per shard of rows).
* `ledger.py`: the controller's tally of test results into one verdict per check.
* `artifacts.py`: `signoff.json` for machines and `signoff.md` for the person who signs.
* `plugin.py`: the pytest hooks and fixtures that tie them together, with or without xdist.
"""
