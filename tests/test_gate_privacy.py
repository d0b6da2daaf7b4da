"""What a gate run writes and shows stays private (verification/gate/privacy.py): the target's
password is in none of its output or files, and its files are 0600 in 0700 folders."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.test_gate import WITHOUT_FAKER, run_gate_in_process
from verification.gate.plugin import REPORT_ATTRIBUTE
from verification.gate.privacy import mask_report
from verification.snapshots import checkpoint_row, session_row, write_snapshot

GATE_TESTS = Path(__file__).resolve().parents[1] / "verification" / "gate" / "test_signoff.py"
PASSWORD = "S3cretPW"


@pytest.fixture(scope="module")
def private_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("private") / "legacy.db"
    write_snapshot(path, [checkpoint_row(1, {"reason": "r"})], [session_row(1, "a:c", {"agent_id": "a"})])
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("target", "workers"),
    [
        (f"postgresql://u:{PASSWORD}@127.0.0.1:5432/test", ["-n", "2"]),
        (f"mysql://root:{PASSWORD}@127.0.0.1:3306/test", []),
    ],
    ids=["postgresql-xdist", "mysql"],
)
def test_a_gate_run_against_a_target_it_cannot_open_shows_and_writes_no_password(
    pytester: pytest.Pytester, private_snapshot: Path, target: str, workers: list[str]
) -> None:
    result = pytester.runpytest_subprocess(
        str(GATE_TESTS),
        *WITHOUT_FAKER,
        *workers,
        "--ksi-snapshot",
        str(private_snapshot),
        "--ksi-target",
        target,
        "--junitxml",
        "reports/junit.xml",
        "-rA",
        "--tb=long",  # every frame with its arguments, the URL among them
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = "\n".join(result.outlines + result.errlines)
    assert "cannot open target" in output  # the failure is shown, with the URL masked
    assert PASSWORD not in output

    files = [path for path in pytester.path.rglob("*") if path.is_file()]
    assert {"signoff.json", "signoff.md", "junit.xml"} <= {path.name for path in files}
    assert [path for path in files if PASSWORD.encode() in path.read_bytes()] == []
    document = json.loads((pytester.path / "signoff" / "signoff.json").read_text())
    assert document["verdict"] == "FAIL"
    assert document["target"]["location"] == target.replace(PASSWORD, "***")
    assert f"cannot open target {target.replace(PASSWORD, '***')}" in json.dumps(document)

    created = [pytester.path / "signoff", pytester.path / "reports"]
    created += [path for folder in created for path in folder.iterdir()]
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in created}
    assert modes == {"signoff": 0o700, "reports": 0o700, "signoff.json": 0o600, "signoff.md": 0o600, "junit.xml": 0o600}


def test_mask_report_masks_the_traceback_arguments_and_the_gate_result() -> None:
    report = pytest.TestReport(
        "t.py::test",
        ("t.py", 1, "test"),
        {},
        "failed",
        f"target = 'mysql://root:{PASSWORD}@h/db'\nE   failed",
        "call",
        sections=[("Captured stdout call", f"dsn password={PASSWORD}")],
    )
    setattr(report, REPORT_ATTRIBUTE, json.dumps({"check": "x", "result": {"summary": f"at {PASSWORD}"}}))
    mask_report(report, {PASSWORD}, (REPORT_ATTRIBUTE,))
    assert report.longrepr == "target = 'mysql://root:***@h/db'\nE   failed"
    assert report.sections == [("Captured stdout call", "dsn password=***")]
    assert json.loads(getattr(report, REPORT_ATTRIBUTE)) == {"check": "x", "result": {"summary": "at ***"}}
    assert report.outcome == "failed"


URL = f"postgresql://u:{PASSWORD}@127.0.0.1:5432/test"


@pytest.mark.parametrize(
    ("option", "complaint"),
    [
        ("--ksi-snapshot", "expects a file or folder path, not a database URL"),
        ("--ksi-accept-quarantine", "expects a file or folder path, not a database URL"),
        ("--ksi-signoff-dir", "expects a file or folder path, not a database URL"),
        ("--ksi-max-checkpoint-save-ms", "not a number of milliseconds"),
        ("--ksi-shard-rows", "not a whole number"),
    ],
)
def test_a_database_url_given_to_another_option_is_a_usage_error_that_masks_it(
    pytester: pytest.Pytester, private_snapshot: Path, option: str, complaint: str
) -> None:
    """pytest prints an option type's message as it is: a URL typed in the wrong place (a
    snapshot, a folder, a number) is refused with its password masked, and nothing is created."""
    snapshot = [] if option == "--ksi-snapshot" else ["--ksi-snapshot", str(private_snapshot)]
    result = run_gate_in_process(pytester, *snapshot, option, URL)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = "\n".join(result.outlines + result.errlines)
    assert f"{option}: {complaint}" in output and "postgresql://u:***@127.0.0.1:5432/test" in output
    assert PASSWORD not in output
    assert not (pytester.path / "signoff").exists()
    assert not [path for path in pytester.path.rglob("*") if "postgresql" in path.name]


@pytest.mark.parametrize("pyargs", [[], ["--pyargs"]], ids=["path", "pyargs"])
def test_a_url_pytest_cannot_collect_is_echoed_masked(
    pytester: pytest.Pytester, private_snapshot: Path, pyargs: list[str]
) -> None:
    """A URL typed without `--ksi-target` (or twice) is a collection argument pytest cannot find."""
    result = run_gate_in_process(pytester, *pyargs, "--ksi-snapshot", str(private_snapshot), URL)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = "\n".join(result.outlines + result.errlines)
    assert "not found: postgresql://u:***@127.0.0.1:5432/test" in output
    assert PASSWORD not in output
