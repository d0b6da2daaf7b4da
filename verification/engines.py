"""The target engines the tests run on: SQLite always; PostgreSQL and MySQL/MariaDB when their
servers answer. Registered as a pytest plugin by `verification.pytest_plugin`, so `tests/` and
`verification/` share the fixtures.

Every test database is isolated: each pytest process (each xdist worker) makes its own
PostgreSQL schemas and MySQL databases, named `ksi_<worker>_<random>`, and drops them when its
session ends, so `-n 2` runs never meet. A hypothesis example needs an empty target, and making
one costs a server a dozen statements, so namespaces are kept in a small pool and emptied
(`DELETE`) before each reuse.

Servers are found at `$KSI_TEST_POSTGRESQL_URL` and `$KSI_TEST_MYSQL_URL` (defaults: this
machine's, with the `test` database). One that cannot be reached makes its tests fail under CI
(`CI=true`), where the servers are part of the set-up, and skip elsewhere with the reason.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path
from typing import Protocol

import pytest

from migrator import engines
from migrator.models import ALL_MODELS
from migrator.peewee_parts import sort_models
from migrator.redaction import mask_secrets, mask_url, url_secrets

SERVER_URLS = {
    engines.POSTGRESQL: os.environ.get("KSI_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    engines.MYSQL: os.environ.get("KSI_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
SERVER_ENGINES = tuple(SERVER_URLS)
ALL_ENGINES = (engines.SQLITE, *SERVER_ENGINES)

# Children before parents, so emptying a namespace never trips a foreign key.
_TABLES_CHILDREN_FIRST = [model._meta.table_name for model in reversed(sort_models(ALL_MODELS))]


class Targets(Protocol):
    """Hands out empty targets on one engine."""

    engine: str

    def fresh(self) -> AbstractContextManager[str]:
        """An empty target (a file path or a URL) for the length of the `with` block."""
        ...


class SqliteTargets:
    engine = engines.SQLITE

    @contextmanager
    def fresh(self) -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="ksi-target-") as folder:
            yield str(Path(folder) / "target.db")


SQLITE_TARGETS = SqliteTargets()


class ServerTargets:
    """Namespaces of one server, private to this process, emptied before each use."""

    def __init__(self, engine: str, url: str) -> None:
        self.engine = engine
        self.url = url
        self._prefix = f"ksi_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:8]}"
        self._created: list[str] = []
        self._free: list[str] = []
        with closing(engines.connect(url)) as server:
            server.connect()  # raises when the server cannot be reached

    @contextmanager
    def fresh(self) -> Iterator[str]:
        name = self._free.pop() if self._free else self._create()
        url = engines.engine_for_url(self.url).namespace_url(self.url, name)
        _empty(url)
        try:
            yield url
        finally:
            self._free.append(name)

    def _create(self) -> str:
        name = f"{self._prefix}_{len(self._created)}"
        with closing(engines.connect(self.url)) as server:
            engines.engine(server).create_namespace(name)
        self._created.append(name)
        return name

    def close(self) -> None:
        with closing(engines.connect(self.url)) as server:
            for name in self._created:
                engines.engine(server).drop_namespace(name)
        self._created.clear()
        self._free.clear()


def _empty(url: str) -> None:
    with closing(engines.connect(url)) as database:
        present = set(database.get_tables())
        with database.atomic():
            for table in _TABLES_CHILDREN_FIRST:
                if table in present:
                    database.execute_sql(f"DELETE FROM {engines.engine(database).quoted(table)}")


def server_unavailable(engine: str, reason: str) -> None:
    """Fail under CI, where the servers are part of the set-up; skip with the reason elsewhere."""
    message = f"{engine} server at {mask_url(SERVER_URLS[engine])} cannot be used: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class EngineRegistry:
    """The targets of each engine, opened on first use and closed with the session."""

    def __init__(self) -> None:
        self._opened: dict[str, Targets] = {engines.SQLITE: SQLITE_TARGETS}
        self._unavailable: dict[str, str] = {}

    def targets(self, engine: str) -> Targets:
        if engine in self._unavailable:
            server_unavailable(engine, self._unavailable[engine])
        if engine not in self._opened:
            try:
                self._opened[engine] = ServerTargets(engine, SERVER_URLS[engine])
            except Exception as exc:  # noqa: BLE001 - a missing driver or a refused connection alike
                reason = mask_secrets(" ".join(str(exc).split()), url_secrets(SERVER_URLS[engine]))
                self._unavailable[engine] = reason or type(exc).__name__
                server_unavailable(engine, self._unavailable[engine])
        return self._opened[engine]

    def close(self) -> None:
        for targets in self._opened.values():
            if isinstance(targets, ServerTargets):
                targets.close()


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def engine_registry() -> Iterator[EngineRegistry]:
    registry = EngineRegistry()
    yield registry
    registry.close()


@pytest.fixture(scope="session", params=ALL_ENGINES)
def any_engine(request: pytest.FixtureRequest, engine_registry: EngineRegistry) -> Targets:
    """Targets on each engine in turn: SQLite, PostgreSQL, MySQL."""
    return engine_registry.targets(request.param)


@pytest.fixture(scope="session", params=SERVER_ENGINES)
def server_engine(request: pytest.FixtureRequest, engine_registry: EngineRegistry) -> Targets:
    """Targets on each server engine in turn: PostgreSQL, MySQL."""
    return engine_registry.targets(request.param)


@pytest.fixture
def target(any_engine: Targets) -> Iterator[str]:
    """An empty target on each engine in turn, as a path or URL."""
    with any_engine.fresh() as fresh:
        yield fresh
