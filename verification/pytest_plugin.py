"""The package's pytest plugin, loaded through its `pytest11` entry point wherever it is installed.

It brings in, each under its module name (so naming one again with `-p` or a conftest's
`pytest_plugins` is a no-op, never a second registration):

* `verification.gate.plugin`: the sign-off gate (`--ksi-snapshot`, ...). Without
  `--ksi-snapshot` it collects nothing, so other projects' runs are unaffected.
* `verification.engines`: the fixtures the harness's tests take their targets from.
* `verification.fuzzing`: the hypothesis profiles (`--hypothesis-profile=dev|ci|nightly`) and
  `--ksi-fuzz-budget`, when hypothesis is installed (the gate alone does not need it).

So after `pip install 'ksi-migrator[gate]'`, `pytest --pyargs verification --ksi-snapshot S`
signs off a snapshot from any folder.
"""

from importlib.util import find_spec

pytest_plugins = [
    "verification.gate.plugin",
    "verification.engines",
    *(["verification.fuzzing"] if find_spec("hypothesis") else []),
]
