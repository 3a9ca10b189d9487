"""The catalog store: dataset versions and who references them.

One abstract base, two implementations (SQLite on one machine, PostgreSQL when several
replicas share a catalog), one contract test suite over both. Methods are blocking; the
catalog calls them in threads. Inserting a version is idempotent and atomic (a primary
key on name + version with ON CONFLICT DO NOTHING), which is what makes two concurrent
registrations of the same bytes end in one version. The event a change announces is
written to the outbox table in the change's own transaction (services/common/outbox.py)."""

from __future__ import annotations

import abc
import json
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from services.common import outbox
from services.common.outbox import OutboxEvent, SqlOutbox
from services.data.records import DatasetVersion, Reference


class Referenced(Exception):
    """A version cannot be deleted while something references it."""

    def __init__(self, references: list[Reference]):
        super().__init__(", ".join(map(str, references)))
        self.references = references


class CatalogStore(abc.ABC):
    # The events not yet sent: the relay reads and marks them.
    outbox: outbox.OutboxStore

    @abc.abstractmethod
    def add_version(self, version: DatasetVersion, event: OutboxEvent | None = None) -> tuple[DatasetVersion, bool]:
        """Stores `version` unless name@version exists; returns the stored one and whether it
        is new. `event` is stored with a new version, in the same transaction, and only then."""

    @abc.abstractmethod
    def get_version(self, name: str, version: str) -> DatasetVersion | None: ...

    @abc.abstractmethod
    def latest_version(self, name: str) -> DatasetVersion | None:
        """The most recently created version of `name`."""

    @abc.abstractmethod
    def list_versions(self, name_prefix: str = "") -> list[DatasetVersion]:
        """Every version whose name starts with the prefix, by name, newest first within a name."""

    @abc.abstractmethod
    def delete_version(self, name: str, version: str, event: OutboxEvent | None = None) -> bool:
        """Deletes unless referenced (raises Referenced); False when there was nothing to
        delete. `event` is stored in the same transaction when a version was deleted."""

    @abc.abstractmethod
    def add_reference(self, name: str, version: str, reference: Reference) -> None:
        """Records that `reference` uses name@version; repeating it changes nothing."""

    @abc.abstractmethod
    def references(self, name: str, version: str) -> list[Reference]: ...

    @abc.abstractmethod
    def content_in_use(self, content_sha256: str) -> bool:
        """Whether any version still points at this stored table."""

    def close(self) -> None:
        """Releases connections."""


SCHEMA = [
    """CREATE TABLE IF NOT EXISTS dataset_versions (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        seq BIGINT NOT NULL,
        content_sha256 TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (name, version))""",
    "CREATE INDEX IF NOT EXISTS dataset_versions_content ON dataset_versions (content_sha256)",
    """CREATE TABLE IF NOT EXISTS dataset_references (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        ref_id TEXT NOT NULL,
        PRIMARY KEY (name, version, kind, ref_id))""",
    outbox.SCHEMA,
]


class SqlCatalogStore(CatalogStore):
    """The SQL both databases understand; subclasses provide connections and placeholders."""

    placeholder = "?"

    @abc.abstractmethod
    def _transaction(self, write: bool = True):
        """A cursor inside one transaction; writing transactions run one at a time, so
        `MAX(seq) + 1` cannot race and no reference lands between a check and a delete."""

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def _create(self) -> None:
        self.outbox = SqlOutbox(self._transaction, self._sql)
        with self._transaction() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    def add_version(self, version, event=None):
        record = json.dumps(version.to_json(), sort_keys=True)
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT COALESCE(MAX(seq), 0) + 1 FROM dataset_versions"))
            seq = cur.fetchone()[0]
            cur.execute(
                self._sql(
                    "INSERT INTO dataset_versions (name, version, seq, content_sha256, record) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, version) DO NOTHING"
                ),
                (version.name, version.version, seq, version.content_sha256, record),
            )
            created = cur.rowcount == 1
            if created:
                self.outbox.write(cur, [event])
                return version, True
            cur.execute(
                self._sql("SELECT record FROM dataset_versions WHERE name = ? AND version = ?"),
                (version.name, version.version),
            )
            return DatasetVersion.from_json(json.loads(cur.fetchone()[0])), False

    def get_version(self, name, version):
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql("SELECT record FROM dataset_versions WHERE name = ? AND version = ?"),
                (name, version),
            )
            row = cur.fetchone()
        return DatasetVersion.from_json(json.loads(row[0])) if row else None

    def latest_version(self, name):
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql("SELECT record FROM dataset_versions WHERE name = ? ORDER BY seq DESC LIMIT 1"),
                (name,),
            )
            row = cur.fetchone()
        return DatasetVersion.from_json(json.loads(row[0])) if row else None

    def list_versions(self, name_prefix=""):
        escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql(
                    "SELECT record FROM dataset_versions WHERE name LIKE ? ESCAPE '\\' "
                    "ORDER BY name, seq DESC"
                ),
                (escaped + "%",),
            )
            rows = cur.fetchall()
        return [DatasetVersion.from_json(json.loads(r[0])) for r in rows]

    def delete_version(self, name, version, event=None):
        with self._transaction() as cur:
            refs = self._references(cur, name, version)
            if refs:
                raise Referenced(refs)
            cur.execute(
                self._sql("DELETE FROM dataset_versions WHERE name = ? AND version = ?"), (name, version)
            )
            deleted = cur.rowcount == 1
            if deleted:
                self.outbox.write(cur, [event])
            return deleted

    def add_reference(self, name, version, reference):
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO dataset_references (name, version, kind, ref_id) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING"
                ),
                (name, version, reference.kind, reference.id),
            )

    def references(self, name, version):
        with self._transaction(write=False) as cur:
            return self._references(cur, name, version)

    def _references(self, cur, name, version) -> list[Reference]:
        cur.execute(
            self._sql(
                "SELECT kind, ref_id FROM dataset_references WHERE name = ? AND version = ? "
                "ORDER BY kind, ref_id"
            ),
            (name, version),
        )
        return [Reference(kind, ref_id) for kind, ref_id in cur.fetchall()]

    def content_in_use(self, content_sha256):
        with self._transaction(write=False) as cur:
            cur.execute(
                self._sql("SELECT 1 FROM dataset_versions WHERE content_sha256 = ? LIMIT 1"), (content_sha256,)
            )
            return cur.fetchone() is not None


class SqliteCatalogStore(SqlCatalogStore):
    """One file; a connection per thread, WAL so readers do not wait for the writer."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._create()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._guard:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, write: bool = True):
        conn = self._connection()
        cur = conn.cursor()
        # IMMEDIATE takes the write lock up front.
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    def close(self) -> None:
        with self._guard:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


ADVISORY_LOCK = 0x6B7464  # "ktd": serialises catalog writes across replicas


class PostgresCatalogStore(SqlCatalogStore):
    """PostgreSQL through psycopg2, with a small thread-safe pool."""

    placeholder = "%s"

    def __init__(self, url: str, *, max_connections: int = 8):
        from psycopg2.pool import ThreadedConnectionPool

        self.url = url
        self._pool = ThreadedConnectionPool(1, max_connections, url)
        self._create()

    @contextmanager
    def _transaction(self, write: bool = True):
        conn = self._pool.getconn()
        try:
            with conn:  # commits, or rolls back on an exception
                with conn.cursor() as cur:
                    if write:  # what BEGIN IMMEDIATE does in SQLite
                        cur.execute("SELECT pg_advisory_xact_lock(?)".replace("?", str(ADVISORY_LOCK)))
                    yield cur
        finally:
            self._pool.putconn(conn)

    def _sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def close(self) -> None:
        self._pool.closeall()


def open_store(url: str, home: Path) -> CatalogStore:
    """`""` or `sqlite:///path`: SQLite (default under the data home); `postgresql://...`: PostgreSQL."""
    if not url:
        return SqliteCatalogStore(Path(home) / "data" / "catalog.db")
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return SqliteCatalogStore(Path(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite:"):]))
    if scheme in ("postgresql", "postgres"):
        return PostgresCatalogStore(url)
    raise ValueError(f"unsupported catalog URL {url!r}: use sqlite:///path or postgresql://...")
