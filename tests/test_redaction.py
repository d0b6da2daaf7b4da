"""Passwords never leave the process: URLs are shown masked in every message, error and traceback."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import peewee as pw
import pytest

from migrator import engines, open_store
from migrator.cli import main
from migrator.errors import LegacyUnavailable, TargetUnreachable
from migrator.redaction import mask_secrets, mask_url, url_secrets
from migrator.target import open_target
from tests.conftest import SnapshotFactory
from verification.engines import EngineRegistry, Targets
from verification.snapshots import checkpoint_row, session_row

PASSWORD = "S3cretPW"
# Wrong passwords for this machine's servers: the connections fail (PostgreSQL: no such role;
# MariaDB: root has no password), and the drivers' messages and tracebacks are what they print.
FAILING_URLS = [
    f"postgresql://u:{PASSWORD}@127.0.0.1:5432/test",
    f"mysql://u:{PASSWORD}@127.0.0.1:3306/test",
    f"mysql://root:{PASSWORD}@127.0.0.1:3306/test",
    f"postgresql://u@127.0.0.1:5432/test?password={PASSWORD}",
    f"postgresql://u:{PASSWORD}@127.0.0.1:1/test",  # nothing listens there
    f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/test",
    f"nosuchdb://u:{PASSWORD}@127.0.0.1/test",
]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://postgres:S3cretPW@host:5432/db", "postgresql://postgres:***@host:5432/db"),
        ("mysql://u:p@ss:w0rd@h/db", "mysql://u:***@h/db"),  # an unencoded @ in the password
        ("postgresql://u:S3cret%40PW@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("postgresql://u@h/db?password=S3cretPW&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("mysql://u@h/db?passwd=S3cretPW", "mysql://u@h/db?passwd=***"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("sqlite:////var/lib/ksi/target.db", "sqlite:////var/lib/ksi/target.db"),
        ("/var/lib/ksi/target.db", "/var/lib/ksi/target.db"),
    ],
)
def test_mask_url_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert mask_url(shown) == shown


@pytest.mark.parametrize("url", ["mysql://u:S3cretPW@127.0.0.1:1/db", "mysql://u@127.0.0.1:1/db?passwd=S3cretPW"])
def test_a_mysql_password_reaches_the_driver_under_the_name_it_expects(url: str) -> None:
    pytest.importorskip("pymysql")
    database = engines.connect(url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(pw.OperationalError):  # port 1: nothing listens, so the driver gets no further
            database.connect()
    assert [str(warning.message) for warning in caught] == []


def test_mask_secrets_hides_a_known_password_in_any_form() -> None:
    url = "postgresql://u:S3cret%40PW@h/db"
    assert url_secrets(url) == {"S3cret%40PW", "S3cret@PW"}
    echoed = "dsn: dbname=db user=u password=S3cret@PW host=h; kwargs {'password': 'S3cret@PW'}; S3cret%40PW"
    masked = mask_secrets(echoed, url_secrets(url))
    assert "S3cret" not in masked
    assert masked == "dsn: dbname=db user=u password=*** host=h; kwargs {'password': '***'}; ***"


def test_mask_secrets_hides_libpq_passwords_it_was_not_told_about() -> None:
    masked = mask_secrets("host=h password='a b\\' c' user=u sslpassword=k")
    assert masked == "host=h password=*** user=u sslpassword=***"


@pytest.mark.parametrize("url", FAILING_URLS)
def test_open_target_errors_mask_the_password(url: str) -> None:
    with pytest.raises(TargetUnreachable) as failed:
        open_target(url)
    assert PASSWORD not in str(failed.value)
    assert str(failed.value).startswith(f"cannot open target {mask_url(url)}: ")


def test_the_store_masks_the_password_of_its_target(engine_registry: EngineRegistry) -> None:
    with engine_registry.targets(engines.POSTGRESQL).fresh() as fresh:
        parts = urlsplit(fresh)  # this machine's PostgreSQL trusts local users: any password connects
        url = urlunsplit(parts._replace(netloc=f"{parts.username}:{PASSWORD}@{parts.hostname}:{parts.port}"))
        with pytest.raises(LegacyUnavailable) as failed:
            open_store(url, mode="dual_write")
    assert PASSWORD not in str(failed.value)
    assert f"beside postgresql://{parts.username}:***@" in str(failed.value)


# --- every failing command ---------------------------------------------------------------------


@pytest.fixture
def snapshot(snapshot_factory: SnapshotFactory) -> Path:
    return snapshot_factory([checkpoint_row(1, {"reason": "r"})], [session_row(1, "a:c", {"agent_id": "a"})])


def commands(url: str, snapshot: Path, folder: Path) -> list[list[str]]:
    return [
        ["migrate", "--source", str(snapshot), "--target", url],
        ["verify", "--source", str(snapshot), "--target", url, "--report", str(folder / "report.json")],
        ["restore", "--target", url, "--out", str(folder / "restored.db")],
        ["export", "--target", url, "--out", str(folder / "export.jsonl")],
        ["cleanup", "--source", str(snapshot), "--target", url, "--archive", str(folder / "archive"), "--dry-run"],
    ]


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["one-line", "traceback"])
@pytest.mark.parametrize("url", FAILING_URLS[:4])
def test_no_failing_command_shows_the_password(
    url: str, verbose: list[str], snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in commands(url, snapshot, tmp_path):
        assert main([*verbose, *argv]) == 2
        out, err = capsys.readouterr()
        assert PASSWORD not in out + err
        assert f"ksi-migrate: error: cannot open target {mask_url(url)}: " in err
        assert ("Traceback" in err) == bool(verbose)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert all(PASSWORD.encode() not in path.read_bytes() for path in files)


URL = FAILING_URLS[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["migrate", "--source", "{snapshot}", "--target", "t.db", URL],  # the URL without its --target
        ["migrate", "--source", "{snapshot}", URL],
        ["migrate", "--source", "{snapshot}", "--target", URL, "--batch-size", URL],
        ["migrate", "--source", "{snapshot}", f"--target={URL}", "--jobs", "many"],
    ],
    ids=["unrecognized", "target-missing", "invalid-value", "equals-form"],
)
def test_a_usage_error_masks_the_password_argparse_echoes(
    argv: list[str], snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit) as usage:
        main([argument.format(snapshot=snapshot) for argument in argv])
    out, err = capsys.readouterr()
    assert usage.value.code == 2 and "error: " in err
    assert PASSWORD not in out + err
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["migrate", "--source", URL, "--target", "t.db"],
        ["archive", "--source", URL, "--out", "archive"],
        ["status", "--target", "t.db", "--source", URL],
        ["restore", "--archive", URL, "--out", "r.db"],
        ["restore", "--target", "t.db", "--out", URL],
        ["restore", "--target", "t.db", "--checkpoints-out", URL, "--sessions-out", "s.db"],
        ["export", "--target", "t.db", "--out", URL],
        ["verify", "--source", "s.db", "--target", "t.db", "--report", URL],
        ["cleanup", "--source", "s.db", "--target", "t.db", "--archive", URL],
        ["demo", "--dir", URL],
        ["fabricate", URL],
    ],
    ids=[
        "migrate-source",
        "archive-source",
        "status-source",
        "restore-archive",
        "restore-out",
        "restore-checkpoints-out",
        "export-out",
        "verify-report",
        "cleanup-archive",
        "demo-dir",
        "fabricate-out",
    ],
)
def test_a_database_url_where_a_path_is_expected_is_refused_masked_and_creates_nothing(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL given for a file or folder would otherwise become a path named after it (`postgresql:/u:pw@...`,
    the password in a folder's name and in the target's record of its source), echoed back unmasked."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as usage:
        main(argv)
    out, err = capsys.readouterr()
    assert usage.value.code == 2
    assert f"expects a file or folder path, not a database URL: {mask_url(URL)}" in err
    assert PASSWORD not in out + err
    assert list(tmp_path.iterdir()) == []


def test_an_unexpected_error_shows_a_masked_traceback_and_exits_3(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"driver said: host=h password={PASSWORD} port=5432")

    monkeypatch.setattr("migrator.cli.backfill", broken)
    assert main(["migrate", "--source", str(snapshot), "--target", str(tmp_path / "t.db")]) == 3  # a bug of ours
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: driver said: host=h password=*** port=5432" in err
    internal = "ksi-migrate: internal error: RuntimeError: driver said: host=h password=*** port=5432"
    assert err.splitlines()[-1] == internal
    assert PASSWORD not in err


# --- a URL never needs a password --------------------------------------------------------------


@pytest.fixture
def mysql_user_with_password(engine_registry: EngineRegistry) -> Iterator[tuple[str, str]]:
    """A MySQL user with a password, allowed into one fresh database: (user, url of that database)."""
    targets: Targets = engine_registry.targets(engines.MYSQL)
    user = f"ksi_{uuid.uuid4().hex[:8]}"
    with targets.fresh() as fresh, closing(engines.connect(fresh)) as server:
        database = engines.engine(server).current_namespace()
        server.execute_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{PASSWORD}'")
        try:
            server.execute_sql(f"GRANT ALL ON `{database}`.* TO '{user}'@'%%'")
            yield user, fresh
        finally:
            server.execute_sql(f"DROP USER '{user}'@'%%'")


def test_a_mysql_password_comes_from_an_option_file_named_in_the_url(
    mysql_user_with_password: tuple[str, str], snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user, root_url = mysql_user_with_password
    option_file = tmp_path / "client.cnf"
    option_file.write_text(f"[client]\npassword={PASSWORD}\n")
    option_file.chmod(0o600)
    database = root_url.rsplit("/", 1)[1]
    url = f"mysql://{user}@127.0.0.1:3306/{database}?read_default_file={option_file}"
    assert main(["migrate", "--source", str(snapshot), "--target", url]) == 0
    assert main(["verify", "--source", str(snapshot), "--target", url]) == 0
    option_file.write_text(f"[client]\npassword=not-{PASSWORD}\n")  # the file is what authenticates
    assert main(["verify", "--source", str(snapshot), "--target", url]) == 2
    assert PASSWORD not in "".join(capsys.readouterr())
