"""One contract for every catalog store: SQLite, and PostgreSQL at 127.0.0.1:5432."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import pytest

from kubetune.events.v1.events_pb2 import DatasetDeleted
from services.common.outbox import OutboxEvent
from services.data.records import Reference
from services.data.store import PostgresCatalogStore, Referenced, SqliteCatalogStore, open_store
from testing.datasets import make_version

@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteCatalogStore(tmp_path / "catalog.db")
        yield s
        s.close()
        return
    url = request.getfixturevalue("postgres_url")
    import psycopg2

    schema = "kt_" + uuid.uuid4().hex[:10]
    admin = psycopg2.connect(url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    s = PostgresCatalogStore(f"{url}?options=-csearch_path%3D{schema}")
    yield s
    s.close()
    admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
    admin.close()


def test_add_is_idempotent_and_round_trips(store):
    v = make_version()
    assert store.add_version(v) == (v, True)
    again, created = store.add_version(replace(v, source_uri="/elsewhere"))
    assert (again, created) == (v, False)
    assert store.get_version("seed", v.version) == v
    assert store.get_version("seed", "000000000000") is None


def test_latest_and_listing(store):
    a = make_version(version="aaaaaaaaaaaa")
    b = make_version(version="bbbbbbbbbbbb")
    other = make_version(name="seeds", version="cccccccccccc")
    for v in (b, a, other):
        store.add_version(v)
    assert store.latest_version("seed") == a  # the last one added, whatever its id
    assert store.latest_version("nope") is None
    assert [(v.name, v.version) for v in store.list_versions()] == [
        ("seed", "aaaaaaaaaaaa"), ("seed", "bbbbbbbbbbbb"), ("seeds", "cccccccccccc")]
    assert [v.name for v in store.list_versions("seeds")] == ["seeds"]
    store.add_version(make_version(name="a_b", version="dddddddddddd"))
    store.add_version(make_version(name="axb", version="eeeeeeeeeeee"))
    assert [v.name for v in store.list_versions("a_")] == ["a_b"]  # '_' is not a wildcard


def test_references_block_delete(store):
    v = make_version()
    store.add_version(v)
    store.add_reference("seed", v.version, Reference("study", "s1"))
    store.add_reference("seed", v.version, Reference("study", "s1"))
    store.add_reference("seed", v.version, Reference("model", "m version 1"))
    assert store.references("seed", v.version) == [Reference("model", "m version 1"), Reference("study", "s1")]
    with pytest.raises(Referenced) as info:
        store.delete_version("seed", v.version)
    assert len(info.value.references) == 2
    assert store.get_version("seed", v.version) == v


def test_delete_and_content_use(store):
    a = make_version(version="aaaaaaaaaaaa")
    b = make_version(name="other", version="aaaaaaaaaaaa")
    store.add_version(a)
    store.add_version(b)
    assert store.delete_version("seed", a.version)
    assert not store.delete_version("seed", a.version)
    assert store.content_in_use(a.content_sha256)  # still used by "other"
    store.delete_version("other", b.version)
    assert not store.content_in_use(a.content_sha256)


def test_concurrent_adds_create_one(store):
    v = make_version()
    results = []

    def add():
        results.append(store.add_version(v)[1])

    threads = [threading.Thread(target=add) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert len(store.list_versions()) == 1


EVENTS = [OutboxEvent.of(f"event-{n}", dataset_deleted=DatasetDeleted(name="seed", version=str(n))) for n in range(10)]


def event(n: int) -> OutboxEvent:
    return EVENTS[n]


def test_an_event_is_stored_with_its_change_and_only_then(store):
    v = make_version()
    assert store.add_version(v, event(1)) == (v, True)
    assert store.add_version(v, event(2))[1] is False  # no change, no event
    store.add_reference("seed", v.version, Reference("study", "s1"))
    with pytest.raises(Referenced):
        store.delete_version("seed", v.version, event(3))  # refused: its event rolls back with it
    assert not store.delete_version("seed", "000000000000", event(4))
    assert store.outbox.pending(10) == [event(1)]


def test_outbox_pending_in_order_and_marked_sent(store):
    for n in range(5):
        store.add_version(make_version(version=f"{n:012x}"), event(n))
    assert [e.id for e in store.outbox.pending(3)] == ["event-0", "event-1", "event-2"]
    store.outbox.mark_sent([event(0), event(2)])
    store.add_version(make_version(version="a" * 12), event(9))
    assert [e.id for e in store.outbox.pending(10)] == ["event-1", "event-3", "event-4", "event-9"]
    assert store.outbox.pending(10)[0] == event(1)  # subject and bytes round-trip


def test_open_store(tmp_path):
    s = open_store("", tmp_path)
    assert isinstance(s, SqliteCatalogStore) and s.path == tmp_path / "data" / "catalog.db"
    s.close()
    s = open_store(f"sqlite:///{tmp_path}/x.db", tmp_path)
    assert s.path == tmp_path / "x.db"
    s.close()
    with pytest.raises(ValueError):
        open_store("mysql://x", tmp_path)
