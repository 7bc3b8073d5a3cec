"""Open the app's database (SQLite or PostgreSQL), check the master key, run the migrations.

    python -c "from psyassist.app.store.db import open_database; open_database('sqlite:////tmp/a.db', '/tmp/a.key')"

Order matters for "a wrong master key changes nothing": the key check is read from an existing
database BEFORE any migration runs; only a new, empty database gets a new key file.

SQLite (the embedded default) runs in WAL mode with `synchronous=FULL` (a save the page
acknowledged survives a kill -9 and a power cut), foreign keys on, `secure_delete` on (deleted
rows are zeroed, not left in free pages) and a 30 s busy timeout.  Writes open with
`BEGIN IMMEDIATE` (the write lock is taken up front; a deferred transaction that upgrades to a
write can fail with "database is locked" instead of waiting), reads with a plain `BEGIN`, which
in WAL mode never blocks a writer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from psyassist.app.store.crypto import MasterKey, MasterKeyError
from psyassist.app.store.models import Meta
from psyassist.errors import PsyassistError

HEAD = "0005"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below), pysqlite must not
    cur = dbapi_conn.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "secure_delete=ON",
                   "busy_timeout=30000"):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def make_engine(url: str, *, immediate: bool = False) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise PsyassistError(f"database URL {url!r} is not a URL ({e}); examples: sqlite:///path/app.db, "
                             "postgresql+psycopg://user@host/dbname") from e
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise PsyassistError("the app needs a file database (sqlite:///path/app.db), not an in-memory one")
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=8, max_overflow=16)
        event.listen(engine, "connect", _sqlite_pragmas)
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":  # the plain scheme would pick psycopg2, which we do not install
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise PsyassistError(f"database URL {url!r}: only sqlite and postgresql are supported")


class Database:
    """Two engines on one database: reads (plain BEGIN) and writes (BEGIN IMMEDIATE on SQLite)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.write_engine = make_engine(url, immediate=True) if self.dialect == "sqlite" else self.engine
        self._writer_lock = threading.RLock() if self.dialect == "sqlite" else contextlib.nullcontext()
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in steps of up
        # to 100 ms (its busy handler polls): under 50 concurrent counselors that polling, not the work,
        # was most of a save's latency (p50 ~300 ms).  Threads of this process queue on a lock instead
        # and get the database lock the moment it is free; other processes still meet busy_timeout.
        with self._writer_lock, self._write() as s, s.begin():
            yield s

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "psyassist.app.store:migrations")
    return cfg


def migrate(db: Database, revision: str = "head") -> None:
    """Upgrade the schema to `revision` (default: the newest) in one transaction per revision."""
    cfg = alembic_config()
    with db.write_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _stored_key_check(db: Database) -> bytes | None:
    try:
        if "meta" not in inspect(db.engine).get_table_names():
            return None
    except OperationalError as e:
        raise PsyassistError(f"cannot open the database {db.url}: {e.orig}") from e
    with db.read() as s:
        row = s.get(Meta, "key_check")
        return row.value if row else None


def open_database(url: str, key_file: str | Path, *, create: bool = True) -> tuple[Database, MasterKey, str]:
    """(database at the newest schema, master key, where the key came from).

    An existing database: the key must pass the key check, else MasterKeyError and nothing changes.
    A new one (create=True): migrations run, then a key is loaded or created and its check stored.
    """
    db = Database(url)
    try:
        check = _stored_key_check(db)
        if check is not None:
            key, where = MasterKey.load(Path(key_file), create=False)
            try:
                key.verify(check, where)
            except MasterKeyError:
                from psyassist.app.vault import recover_rotation

                if where != str(key_file) or not recover_rotation(Path(key_file), check):
                    raise
                key, where = MasterKey.load(Path(key_file), create=False)  # a rotation cut short: finished
                key.verify(check, where)
            migrate(db)
            return db, key, where
        if not create:
            raise PsyassistError(f"{url} holds no psyassist app database (no key check); start `psyassist app` "
                                 "once to create it")
        key, where = MasterKey.load(Path(key_file), create=True)
        migrate(db)
        with db.write() as s:
            if s.get(Meta, "key_check") is None:  # another process may have finished first
                s.add(Meta(key="key_check", value=key.key_check()))
                s.add(Meta(key="master_id", value=key.key_id.encode()))
        with db.read() as s:
            key.verify(s.scalar(select(Meta.value).where(Meta.key == "key_check")), where)
        return db, key, where
    except BaseException:
        db.dispose()
        raise
