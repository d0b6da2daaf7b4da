"""Loaded by every Python process of a mutation run (`benchmarks/mutation.py` puts this folder on
PYTHONPATH), so that processes the tests start can run mutmut's copies of the code.

A process a test starts (a pytest run of the gate, its xdist workers, the CLI, a `migrate` worker of
the forkserver) inherits `MUTANT_UNDER_TEST` and imports the mutated copies, whose trampolines, like
mutmut's own module when a worker re-imports it, read mutmut's settings from the working folder at
first use; a test's child often runs elsewhere. The settings are read here from the repository
(`KSI_MUTATION_ROOT`), once, so the child runs the mutant under test like the test itself.
"""

import os

ROOT = os.environ.get("KSI_MUTATION_ROOT")

if ROOT and os.getcwd() != ROOT:
    from mutmut.configuration import config

    here = os.getcwd()
    os.chdir(ROOT)
    try:
        config()
    finally:
        os.chdir(here)
