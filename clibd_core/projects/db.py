"""Where projects live and how a session reaches them.

SQLite in the workspace (``$CLIBD_HOME/projects.db``: nothing to install or start) unless
``CLIBD_DATABASE`` names another database by URL (``postgresql://user@host/db`` for a lab serving the
app from several processes or machines). Opening a database brings its schema to this version's
(Alembic migrations in migrations/), so a project made by an older version opens in this one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from clibd_core.workspace import workspace_root

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class ProjectError(ValueError):
    """A request on a project that cannot be honoured, said in words (and what to do instead)."""


def database_url(url: str | None = None) -> str:
    """The database to use: the one given, ``CLIBD_DATABASE``, else SQLite in the workspace."""
    url = url or os.environ.get("CLIBD_DATABASE")
    if not url:
        root = workspace_root()
        root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{root / 'projects.db'}"
    if url.startswith(("postgresql://", "postgres://")):  # the psycopg 3 driver, which requirements.txt pins
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def migration_config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default); a no-op when it is there."""
    with engine.begin() as connection:
        config = migration_config(connection)
        current = MigrationContext.configure(connection).get_current_revision()
        if revision == "head" and current == ScriptDirectory.from_config(config).get_current_head():
            return
        command.upgrade(config, revision)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the one writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")  # a second writer waits for the first, up to 30 s
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker[Session]:
    engine = make_engine(url)
    try:
        upgrade(engine)
    except Exception as error:  # a wrong URL, a server that is down: say which database failed
        engine.dispose()
        shown = engine.url.render_as_string(hide_password=True)
        raise ProjectError(f"cannot open the project database {shown}: {str(error).splitlines()[0]}") from error
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back (nothing written) when it raises."""
    session = _session_factory(database_url(url))()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
