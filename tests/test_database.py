"""The local database backends (tests/harness.py, scripts/stack): FerretDB on a private
PostgreSQL, whose unique btree indexes get companion GIN indexes and whose non-unique ones
are replaced by GIN indexes of the same name (scripts/postgresql-init.sql), so that
FerretDB's pushed-down equality filters (`_jsonb -> 'f' @> v`) use an index."""

from __future__ import annotations

import subprocess
import threading
import time

import pymongo
import pytest

import harness


@pytest.fixture(scope="module")
def pg_ferret(run_dir):
    db = harness.FerretDB(run_dir / "ferretdb-pg", backend="postgresql")
    db.start()
    try:
        yield db
    finally:
        db.stop()


def psql(db, sql):
    pg = db.postgresql
    out = subprocess.run([harness.PG_BIN / "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", pg.run_dir,
                          "-p", str(pg.port), "-U", "postgres", "-d", "voter", "-c", sql],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def index_used(coll, flt):
    plan = coll.find(flt).explain()["queryPlanner"]["Plan"]
    return [n.get("Index Name") for n in plan_nodes(plan) if n.get("Index Name")]


def test_backend_is_chosen_by_voter_db(monkeypatch, tmp_path):
    monkeypatch.setenv("VOTER_DB", "postgresql")
    assert harness.FerretDB(tmp_path).backend == "postgresql"
    assert "--handler=postgresql" in harness.FerretDB(tmp_path).argv()
    monkeypatch.setenv("VOTER_DB", "sqlite")
    assert "--handler=sqlite" in harness.FerretDB(tmp_path).argv()
    monkeypatch.setenv("VOTER_DB", "mysql")
    with pytest.raises(harness.HarnessError, match="VOTER_DB"):
        harness.database_backend()


def test_pushed_down_filters_use_companion_gin_indexes(pg_ferret, ns):
    client = pymongo.MongoClient(pg_ferret.uri)
    try:
        coll = client[f"db_{ns}"]["votes"]
        coll.insert_many([{"election": f"e{i % 50}", "tallied": i % 2 == 0, "deleted": False}
                          for i in range(3000)])
        coll.create_index([("election", 1), ("tallied", 1)], name="by_election")
        psql(pg_ferret, "ANALYZE")  # planner statistics, as autovacuum would gather them
        one = coll.find_one({"election": "e7"})
        assert one is not None
        by_id = index_used(coll, {"_id": one["_id"], "deleted": False})
        assert len(by_id) == 1 and by_id[0].endswith("_gin"), by_id
        by_election = index_used(coll, {"election": "e7", "tallied": False})
        assert len(by_election) == 1 and "by_election" in by_election[0], by_election
        # a non-unique index is one GIN index under FerretDB's name, its btree gone
        schema = f"db_{ns}"
        kinds = psql(pg_ferret, "SELECT c.relname || ':' || am.amname FROM pg_class c "
                                "JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
                                f"WHERE n.nspname = '{schema}' AND c.relname LIKE '%by_election%'")
        assert kinds == [f"{by_election[0]}:gin"], kinds
        assert coll.count_documents({"tallied": True}) == 1500  # the second column alone
        assert coll.count_documents({"election": "e7", "tallied": False}) == 60
        assert coll.find_one({"_id": one["_id"], "deleted": False})["election"] == "e7"
    finally:
        client.close()


def test_dropping_an_index_drops_its_companion(pg_ferret, ns):
    client = pymongo.MongoClient(pg_ferret.uri)
    try:
        coll = client[f"db_{ns}"]["things"]
        coll.insert_one({"key": "a"})
        coll.create_index([("key", 1)], name="by_key", unique=True)
        schema = f"db_{ns}"
        names = psql(pg_ferret, f"SELECT indexname FROM pg_indexes WHERE schemaname = '{schema}' ORDER BY 1")
        assert sum("by_key" in n for n in names) == 2, names  # the btree and its _gin
        coll.drop_index("by_key")
        names = psql(pg_ferret, f"SELECT indexname FROM pg_indexes WHERE schemaname = '{schema}' ORDER BY 1")
        assert not [n for n in names if "by_key" in n], names
        assert set(coll.index_information()) == {"_id_"}
        assert coll.insert_one({"key": "a"}).inserted_id  # uniqueness went with it
    finally:
        client.close()


def test_a_non_unique_index_is_replaced_by_one_gin_index(pg_ferret, ns):
    """Built on existing documents and kept on new ones, answering equality through the
    pending list as well as the index; dropping it through FerretDB drops the GIN index."""
    client = pymongo.MongoClient(pg_ferret.uri)
    try:
        coll = client[f"db_{ns}"]["bulk"]
        coll.insert_many([{"pg": i // 32, "deleted": False} for i in range(640)])
        coll.create_index([("pg", 1)], name="pg")
        coll.insert_many([{"pg": 20 + i // 32, "deleted": False} for i in range(640)])
        schema = f"db_{ns}"
        rows = psql(pg_ferret, "SELECT c.relname || ':' || am.amname || ':' || coalesce(array_to_string(c.reloptions, ','), '') "
                               "FROM pg_class c JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
                               f"WHERE n.nspname = '{schema}' AND c.relkind = 'i' AND c.relname LIKE '%\\_pg\\_%'")
        assert len(rows) == 1, rows
        name, method, options = rows[0].split(":")
        assert method == "gin" and "fastupdate=on" in options, rows
        psql(pg_ferret, "ANALYZE")
        assert index_used(coll, {"pg": 3, "deleted": False}) == [name]
        assert coll.count_documents({"pg": 3, "deleted": False}) == 32
        assert coll.count_documents({"pg": 25, "deleted": False}) == 32
        assert set(coll.index_information()) == {"_id_", "pg"}
        coll.drop_index("pg")
        assert set(coll.index_information()) == {"_id_"}
        assert psql(pg_ferret, f"SELECT indexname FROM pg_indexes WHERE schemaname = '{schema}' "
                               "AND indexname LIKE '%\\_pg\\_%'") == []
        coll.create_index([("pg", 1)], name="pg")  # and again, under the same name
        assert coll.count_documents({"pg": 30, "deleted": False}) == 32
    finally:
        client.close()


def test_an_update_command_holds_a_connection_per_matching_statement(pg_ferret, ns):
    """What MONGO_UPDATES_PER_COMMAND (shared/include/voter/mongo.h) rests on: FerretDB keeps
    each statement's query of an update command open, on its own pooled PostgreSQL
    connection, until the command ends. After 40 statements the pool holds at least 40
    connections, beyond the 16 it keeps open (tests/harness.py, FERRETDB_PG_POOL_MIN; 50
    would hang FerretDB for every client: docs/design.md, "Local database"). If this fails
    after a FerretDB upgrade, the limit may be lifted."""
    client = pymongo.MongoClient(pg_ferret.uri)
    count = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'voter' AND pid <> pg_backend_pid()"
    statements = 40
    assert statements > harness.FERRETDB_PG_POOL_MIN + 8
    try:
        coll = client[f"db_{ns}"]["flags"]
        coll.insert_many([{"_id": i, "tallied": False} for i in range(statements)])
        before = int(psql(pg_ferret, count)[0])
        res = coll.bulk_write([pymongo.UpdateOne({"_id": i}, {"$set": {"tallied": True}})
                               for i in range(statements)], ordered=False)
        assert res.modified_count == statements
        after = int(psql(pg_ferret, count)[0])  # the pool keeps its connections, idle
        print("pg connections before/after:", before, after)
        assert before < statements <= after, (before, after)
    finally:
        client.close()


def test_concurrent_multi_statement_updates_fit_the_pool(pg_ferret, ns):
    """Several update commands of MONGO_UPDATES_PER_COMMAND statements at once hold one
    connection per statement each: with FerretDB's default pool of 50, ten such commands
    in flight hung FerretDB for every client (no command finished in 10 s; seven hung it
    once in two tries). The harness and scripts/stack give the pool FERRETDB_PG_POOL_MAX
    connections, and each service process keeps at most MONGO_BULK_UPDATES_IN_FLIGHT such
    commands in flight (shared/include/voter/mongo.h): ten at once stand for five voter
    processes. Each thread's commands must keep finishing."""
    threads, statements, seconds = 10, 8, 5.0
    assert threads * statements > 50  # beyond FerretDB's default pool
    admin = pymongo.MongoClient(pg_ferret.uri)
    coll_name = f"db_{ns}"
    admin[coll_name]["tallies"].insert_many([{"_id": i, "n": 0} for i in range(threads * statements)])
    done = [0] * threads
    errors = []
    stop = time.monotonic() + seconds

    def work(t):
        client = pymongo.MongoClient(pg_ferret.uri, socketTimeoutMS=20000)
        ops = [pymongo.UpdateOne({"_id": t * statements + j}, {"$inc": {"n": 1}}) for j in range(statements)]
        try:
            while time.monotonic() < stop:
                client[coll_name]["tallies"].bulk_write(ops, ordered=True)
                done[t] += 1
        except pymongo.errors.PyMongoError as exc:
            errors.append(repr(exc)[:200])
        finally:
            client.close()

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    try:
        print("commands finished per thread:", done)
        assert not errors, errors
        assert min(done) > 0, done
        totals = [d["n"] for d in admin[coll_name]["tallies"].find().sort("_id", 1)]
        assert totals == [done[i // statements] for i in range(threads * statements)]
    finally:
        admin.close()
