"""The package's pytest plugin (`verification/pytest_plugin.py`, the `pytest11` entry point): loaded
once wherever the package is installed, and enough to sign off a snapshot from any folder."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.fabricate import fabricate_snapshot
from verification.gate.artifacts import migrator_installed_from_git

REPOSITORY = Path(__file__).resolve().parents[1]
PLUGIN_MODULES = ("verification.pytest_plugin", "verification.gate.plugin", "verification.fuzzing")


def test_naming_the_plugins_again_registers_nothing_twice(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_registered=f"""
        def test_each_plugin_is_registered_under_its_module_name(pytestconfig):
            for module in {PLUGIN_MODULES!r}:
                assert pytestconfig.pluginmanager.get_plugin(module) is not None
        """
    )
    again = [argument for module in PLUGIN_MODULES for argument in ("-p", module)]

    result = pytester.runpytest_inprocess(*again, "--ksi-shard-rows=10", "--hypothesis-profile=ci")

    result.assert_outcomes(passed=1)


def test_without_hypothesis_or_a_snapshot_the_package_says_what_is_missing_in_one_line(
    pytester: pytest.Pytester,
) -> None:
    # A gate-only install (no hypothesis, so no fuzzing plugin) run without --ksi-snapshot: the
    # generative suite is asked for, and each of its modules would fail to import.
    result = pytester.runpytest_subprocess("--pyargs", "verification", "-p", "no:verification.fuzzing", "--co")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: no --ksi-snapshot: *needs hypothesis*"])
    assert "pip install 'ksi-migrator[test]'" in result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def source_tree(destination: Path) -> Path:
    """The repository's files as a clone has them (tracked or new, never ignored), copied apart,
    so that building the package writes nothing into the repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPOSITORY,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        if (REPOSITORY / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / name, destination / name)
    return destination


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "PYTHON"))}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_the_gate_signs_off_from_a_package_installed_in_a_fresh_venv_outside_the_repository(tmp_path: Path) -> None:
    """The README's installed-package command, verbatim in spirit: a fresh venv, a non-editable
    install with the `gate` extra (so no hypothesis), and pytest run from a folder with no
    conftest or settings of its own."""
    venv = tmp_path / "venv"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = source_tree(tmp_path / "source")
    assert run([sys.executable, "-m", "venv", venv], tmp_path).returncode == 0
    install = run([venv / "bin" / "pip", "install", "-q", f"{source}[gate]"], tmp_path)
    assert install.returncode == 0, install.stderr
    snapshot = elsewhere / "legacy.db"
    fabricate_snapshot(snapshot, checkpoints=3, sessions=20, seed=5)

    imported = run([venv / "bin" / "python", "-c", "import verification; print(verification.__file__)"], elsewhere)
    # Latency limits out of reach: this is about the install, and a busy machine's p99 is not a finding.
    limits = ["--ksi-max-checkpoint-save-ms", "60000", "--ksi-max-session-lookup-ms", "60000"]
    gate = run([venv / "bin" / "pytest", "--pyargs", "verification", "--ksi-snapshot", snapshot, *limits], elsewhere)

    assert Path(imported.stdout.strip()).is_relative_to(venv), "the package must come from the venv, not a checkout"
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]
    assert (elsewhere / "signoff" / "signoff.md").read_text(encoding="utf-8").startswith("PASS")
    assert "test_rows_exact" in gate.stdout


@pytest.mark.parametrize(
    ("direct_url", "source"),
    [
        (  # pip install 'ksi-migrator[gate] @ git+file:///src@main'
            {"url": "file:///src", "vcs_info": {"vcs": "git", "commit_id": "0123abcd", "requested_revision": "main"}},
            {"commit": "0123abcd", "local_changes": False},
        ),
        ({"url": "file:///src", "dir_info": {}}, None),  # pip install '/src[gate]': pip records no commit
        ({"url": "file:///src", "vcs_info": {"vcs": "hg", "commit_id": "0123abcd"}}, None),
        (None, None),  # installed by something that writes no direct_url.json
    ],
)
def test_an_install_from_git_names_its_commit_in_the_sign_off(
    direct_url: dict[str, object] | None, source: dict[str, object] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Installed:
        def read_text(self, name: str) -> str | None:
            return json.dumps(direct_url) if name == "direct_url.json" and direct_url is not None else None

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Installed())

    assert migrator_installed_from_git() == source
