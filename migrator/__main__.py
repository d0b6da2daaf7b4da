"""`python -m migrator` is `ksi-migrate`."""

from migrator.cli import run

run()
