#!/usr/bin/python3
"""Per-request cost of the voter service as one election grows to a million votes, on each
local database backend (FerretDB on SQLite, FerretDB on PostgreSQL), beside raw driver
operations on the same database.

For every backend in BENCH_DBS a private RabbitMQ and FerretDB (tests/harness.py) and a
release voter service are started; votes are added with POST /voter/votes/batch (NDJSON,
10,000 per request) up to each size in the backend's list, and at each size it measures
(median and p99 over BENCH_SAMPLES requests, fewer if one operation exceeds
BENCH_BUDGET seconds):

  POST /voter/votes, the same with a fresh Idempotency-Key, GET /voter/votes/{id},
  GET /voter/results/{election}, the first, the last and the middle page of GET /voter/votes,
  the database commands each POST caused (FerretDB's own counters, flags written behind
  the request included), and, with pymongo on the same database: find_one({_id}) and insert_one into the votes
  collection (documents marked deleted, so no count or page sees them), and the results'
  own query, find({election}) on the tallies; and GET of a path no route serves (404, no
  database): the floor of any request, i.e. this client plus the HTTP layer. The client
  is a bare keep-alive http.client connection (Client below): requests.Session adds
  0.4-0.6 ms of its own to every request on this machine, a third of a results read;

plus the bulk ingestion rate of the step (votes accepted and written per second) beside
raw insert_many (pymongo, as many per call as the voter's chunk) of BENCH_RAW_INGEST documents into a collection
with the same indexes, and the memory of the database processes (PSS: FerretDB, plus
every PostgreSQL process).

Environment: BENCH_DBS ("sqlite postgresql-plain postgresql"; -plain = without the
companion GIN indexes), BENCH_SIZES_SQLITE ("1000,10000"), BENCH_SIZES_POSTGRESQL_PLAIN
("1000,10000,100000"), BENCH_PAGE_MAX (no limit: no page listing above it; builds
before listing positions read every vote for a page, so give them 10000),
BENCH_SIZES_POSTGRESQL ("1000,10000,100000,1000000"), BENCH_SAMPLES (50), BENCH_BUDGET
(20 s), BENCH_RAW_INGEST (20000: documents of the raw insert_many reference, run from one
and from two threads), BENCH_BATCH_CHUNK (the voter's BATCH_CHUNK; its default if unset),
BENCH_INGEST_WORKERS (the voter's INGEST_WORKERS; its default if unset),
VOTER_BENCH_BUILD_DIR (release binaries, set by bench/scale/run).
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
import http.client
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pymongo
import requests

class Response:
    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.content = status, headers, body

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class Client:
    """HTTP/1.1 over one kept-alive connection per host, with requests' few call shapes used
    here (get with params, post with json or data): the service's time, not the client's."""

    def __init__(self):
        self.conns = {}

    def request(self, method, url, params=None, json_body=None, data=None, headers=None):
        u = urlsplit(url)
        path = u.path + ("?" + u.query if u.query else "")
        if params:
            path += ("&" if u.query else "?") + urlencode(params)
        hdrs = dict(headers or {})
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif data is not None:
            body = data.encode() if isinstance(data, str) else data
        for attempt in (0, 1):  # a kept-alive connection the server closed: once more, anew
            conn = self.conns.get(u.netloc) or http.client.HTTPConnection(u.netloc, timeout=3600)
            self.conns[u.netloc] = conn
            try:
                conn.request(method, path, body=body, headers=hdrs)
                r = conn.getresponse()
                return Response(r.status, dict(r.getheaders()), r.read())
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                del self.conns[u.netloc]
                if attempt:
                    raise

    def get(self, url, params=None, headers=None):
        return self.request("GET", url, params=params, headers=headers)

    def post(self, url, json=None, data=None, headers=None):
        return self.request("POST", url, json_body=json, data=data, headers=headers)


ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import harness  # noqa: E402
from events import candidate_data, cloud_event, publish  # noqa: E402

DBS = os.environ.get("BENCH_DBS", "sqlite postgresql-plain postgresql").split()
SIZES = {
    "sqlite": os.environ.get("BENCH_SIZES_SQLITE", "1000,10000"),
    "postgresql-plain": os.environ.get("BENCH_SIZES_POSTGRESQL_PLAIN", "1000,10000,100000"),
    "postgresql": os.environ.get("BENCH_SIZES_POSTGRESQL", "1000,10000,100000,1000000"),
}
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "50"))
# Before listing positions (voter/src/positions.h) GET /voter/votes read (sort, skip) every
# vote through FerretDB: for such builds, pages above this many votes are left out
PAGE_MAX = int(os.environ.get("BENCH_PAGE_MAX", "1000000000"))
BUDGET = float(os.environ.get("BENCH_BUDGET", "20"))
BATCH = 10000
RAW_INGEST = int(os.environ.get("BENCH_RAW_INGEST", "20000"))
# documents per insert_many of the raw reference: the voter's chunk (BATCH_CHUNK, 2000 by default)
RAW_PER_CALL = int(os.environ.get("BENCH_BATCH_CHUNK") or "2000")
INGEST_WORKERS = os.environ.get("BENCH_INGEST_WORKERS", "")
EXCHANGE = "voter.events"
TITLE = "Scale Election"
NAMES = [f"Candidate {i}" for i in range(8)]
OPS = ["post", "post_idem", "get_id", "results", "page_first", "page_last", "page_mid", "floor", "raw_find",
       "raw_results", "raw_insert"]
LABELS = {"post": "POST /voter/votes", "post_idem": "POST + Idempotency-Key",
          "get_id": "GET /voter/votes/{id}", "results": "GET /voter/results/{e}",
          "page_first": "GET /voter/votes first page", "page_last": "GET /voter/votes last page",
          "page_mid": "GET /voter/votes middle page",
          "floor": "GET unrouted path (404, no db)", "raw_find": "raw find_one {_id} (pymongo)",
          "raw_results": "raw find {election} tallies", "raw_insert": "raw insert_one (pymongo)"}


def timed(fn, samples=SAMPLES, budget=BUDGET):
    """Runs fn up to `samples` times, stopping once `budget` seconds are spent (after one
    sample at least); returns the latencies in ms."""
    out, start = [], time.monotonic()
    while len(out) < samples and (not out or time.monotonic() - start < budget):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p50(xs):
    return statistics.median(xs)


def p99(xs):
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except OSError:
            pass
    return total


def db_memory_mib(mongo):
    pids = [mongo.pid]
    if mongo.postgresql is not None and mongo.postgresql.running:
        pids += mongo.postgresql.processes()
    return pss_kib(pids) / 1024


def setup_election(voter, amqp_url):
    events = [cloud_event("election.created", f"{1:024x}", 1,
                          {"id": f"{1:024x}", "title": TITLE, "date": "2020-11-03T00:00:00.000+0000"})]
    for i, n in enumerate(NAMES):
        first, last = n.split()
        cid = f"{100 + i:024x}"
        events.append(cloud_event("candidate.created", cid, 1, candidate_data(cid, first, last, TITLE)))
    publish(amqp_url, EXCHANGE, events)
    harness.wait_until(lambda: len(requests.get(f"{voter.url}/voter/candidates/{quote(TITLE)}").json()
                                   ["candidates"]) == len(NAMES), timeout=60)


def ingest(session, voter, have, size):
    """Adds size - have votes by batches; returns votes/s until every batch completed."""
    t0 = time.monotonic()
    locations, sent = [], have
    while sent < size:
        n = min(BATCH, size - sent)
        body = "\n".join(json.dumps({"candidate": NAMES[(sent + k) % 8], "election": TITLE}) for k in range(n))
        r = session.post(f"{voter.url}/voter/votes/batch", data=body,
                         headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 202, r.text
        locations.append(r.headers["Location"])
        sent += n
    for loc in locations:
        harness.wait_until(lambda: session.get(loc).json()["status"] == "completed", timeout=3600,
                           interval=0.2, message=f"batch {loc} completed")
    return (size - have) / (time.monotonic() - t0)


def db_commands(mongo):
    """FerretDB's count of the commands it served so far, by command name (debug port)."""
    out = {}
    text = requests.get(f"http://127.0.0.1:{mongo.debug_port}/debug/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("ferretdb_client_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            m = re.search(r'command="([^"]*)"', labels)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + float(value)
    return out


def per_request(before, after, n):
    """Commands per request between two db_commands() readings, as "find 2.00, insert 1.00"."""
    diff = {k: (after.get(k, 0) - before.get(k, 0)) / n for k in after}
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(diff.items()) if v >= 0.005)


def measure(session, voter, db, total, mongo=None):
    base = voter.url
    vote = {"candidate": NAMES[0], "election": TITLE}
    ids = []

    def post():
        r = session.post(f"{base}/voter/votes", json=vote)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    def post_idem():
        r = session.post(f"{base}/voter/votes", json=vote, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    before = db_commands(mongo) if mongo else {}
    res = {"post": timed(post)}
    time.sleep(0.5)  # flags written behind the requests are theirs too
    middle = db_commands(mongo) if mongo else {}
    res["post_idem"] = timed(post_idem)
    time.sleep(0.5)
    if mongo:
        after = db_commands(mongo)
        res["commands"] = {"post": per_request(before, middle, len(res["post"])),
                           "post_idem": per_request(middle, after, len(res["post_idem"]))}
    # old (bulk) and new votes alike
    old = [str(d["_id"]) for d in db.votes.find({}, {"_id": 1}).limit(20)]
    pool = old + ids

    def get_id():
        r = session.get(f"{base}/voter/votes/{random.choice(pool)}")
        assert r.status_code == 200, r.text

    def results():
        r = session.get(f"{base}/voter/results/{quote(TITLE)}")
        assert r.status_code == 200, r.text

    def floor():
        r = session.get(f"{base}/voter/no-such-path")
        assert r.status_code == 404, r.text

    res["get_id"] = timed(get_id)
    res["results"] = timed(results)
    res["floor"] = timed(floor)
    pages = 0
    if total <= PAGE_MAX:
        r = session.get(f"{base}/voter/votes", params={"page": 0, "size": 20})
        if r.status_code == 200:
            pages = r.json()["page"]["totalPages"]
        else:  # FerretDB read every vote for longer than the driver waits
            print(f"bench: GET /voter/votes at {total} votes: {r.status_code} {r.text[:120]}", file=sys.stderr)
    for op, page in (("page_first", 0), ("page_last", pages - 1)) if pages else ():
        def listing(page=page):
            r = session.get(f"{base}/voter/votes", params={"page": page, "size": 20})
            assert r.status_code == 200 and r.json()["_embedded"]["votes"], r.text
        res[op] = timed(listing, samples=min(SAMPLES, 20))
    if pages:  # the costliest page: half the votes between it and either end (a few samples)
        res["page_mid"] = timed(lambda: session.get(f"{base}/voter/votes", params={"page": pages // 2, "size": 20}),
                                samples=3)
    if not pages and total <= PAGE_MAX:  # the count itself failed
        res["page_first"] = res["page_last"] = res["page_mid"] = []
    oids = [d["_id"] for d in db.votes.find({}, {"_id": 1}).limit(20)]
    res["raw_find"] = timed(lambda: db.votes.find_one({"_id": random.choice(oids)}))
    res["raw_results"] = timed(lambda: list(db.tallies.find({"election": TITLE})))
    res["raw_insert"] = timed(lambda: db.votes.insert_one(
        {"candidate": NAMES[0], "election": TITLE, "createdAt": 0, "tallied": True, "deleted": True}))
    count = requests.get(f"{base}/voter/results/{quote(TITLE)}/votes").json()["votes"]
    return res, count


def raw_ingest(db, n=RAW_INGEST, streams=1):
    """Reference for bulk ingestion: pymongo insert_many, RAW_PER_CALL per call (the voter's
    chunk), of n vote-shaped documents into a collection with the votes' indexes, from
    `streams` threads at once (what the database gives to parallel writers, as the voter's
    INGEST_WORKERS consumers are); documents/s."""
    coll = db[f"raw_ingest_{uuid.uuid4().hex[:8]}"]
    coll.create_index([("election", 1), ("tallied", 1)], name="election_tallied")
    coll.create_index([("tallied", 1)], name="tallied")
    coll.create_index([("pg", 1)], name="pg")
    docs = [{"candidate": NAMES[i % 8], "election": TITLE, "createdAt": 0, "tallied": True,
             "deleted": False, "chunk": "raw", "pg": i // 32} for i in range(n)]
    parts = [docs[i::streams] for i in range(streams)]

    def insert(part):
        for i in range(0, len(part), RAW_PER_CALL):
            coll.insert_many(part[i:i + RAW_PER_CALL], ordered=False)
    threads = [threading.Thread(target=insert, args=(part,)) for part in parts]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = n / (time.monotonic() - t0)
    coll.drop()
    return rate


def run_backend(backend, build):
    run_dir = harness.make_run_dir(f"voter-bench-scale-{backend}-")
    rows = []
    rabbit = harness.RabbitMQ(run_dir / "rabbitmq").start()
    mongo = harness.FerretDB(run_dir / "ferretdb", backend=backend.split("-")[0]).start()
    if backend == "postgresql-plain":  # FerretDB's own btree indexes only (see scripts/postgresql-init.sql)
        pg = mongo.postgresql
        subprocess.run([harness.PG_BIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.run_dir,
                        "-p", str(pg.port), "-U", "postgres", "-d", "voter", "-c",
                        "DROP EVENT TRIGGER voter_gin_companion; DROP EVENT TRIGGER voter_gin_companion_drop"],
                       check=True)
    env = {"MONGODB_URI": mongo.uri, "AMQP_URL": rabbit.url, "AMQP_EXCHANGE": EXCHANGE,
           "LOG_LEVEL": "warn", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(harness.free_port()),
           "MONGODB_DATABASE": "bench_scale", "HTTP_MAX_BODY": str(8 * 1024 * 1024)}
    if os.environ.get("BENCH_BATCH_CHUNK"):  # the voter's BATCH_CHUNK (votes per ingestion chunk)
        env["BATCH_CHUNK"] = os.environ["BENCH_BATCH_CHUNK"]
    if INGEST_WORKERS:  # the voter's INGEST_WORKERS (ingestion consumers per process)
        env["INGEST_WORKERS"] = INGEST_WORKERS
    voter = harness.Service("voter", build / "voter" / "voter-voter", env, "/voter/ready",
                            run_dir / "voter.log")
    ok = False
    try:
        print(f"bench: {backend}", file=sys.stderr, flush=True)
        voter.start()
        voter.wait_ready(60)
        setup_election(voter, rabbit.url)
        session = Client()
        db = pymongo.MongoClient(mongo.uri)["bench_scale"]
        have = 0
        for size in [int(x) for x in SIZES[backend].split(",") if x]:
            rate = ingest(session, voter, have, size) if size > have else float("nan")
            res, count = measure(session, voter, db, size, mongo)
            have = count
            rows.append({"size": size, "stored": count, "ingest": rate, "raw_ingest": raw_ingest(db),
                         "raw_ingest_2": raw_ingest(db, streams=2),
                         "mem": db_memory_mib(mongo),
                         "voter_mem": pss_kib([voter.pid]) / 1024, "res": res})
            print_row(backend, rows[-1], flush=True)
        ok = True
    except Exception as exc:  # keep what was measured; say where it stopped
        print(f"bench: {backend} stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        rows.append({"error": f"{type(exc).__name__}: {str(exc)[:200]}"})
    finally:
        voter.stop()
        mongo.stop()
        rabbit.stop()
        if ok:
            harness.remove_run_dir(run_dir)
        else:
            print(f"bench: run directory kept: {run_dir}", file=sys.stderr)
    return rows


def print_row(backend, row, flush=False):
    print(f"[{backend}] {row['stored']} votes: ingest {row['ingest']:.0f} votes/s "
          f"(raw insert_many {row['raw_ingest']:.0f}/s, from two streams {row['raw_ingest_2']:.0f}/s; "
          f"INGEST_WORKERS {INGEST_WORKERS or 'default'}), "
          f"database memory {row['mem']:.0f} MiB, voter {row['voter_mem']:.0f} MiB", file=sys.stderr, flush=flush)
    for op in OPS:
        xs = row["res"].get(op)
        if not xs:
            continue
        print(f"    {LABELS[op]:<32} p50 {p50(xs):9.2f} ms  p99 {p99(xs):9.2f} ms  (n={len(xs)})",
              file=sys.stderr, flush=flush)
    for op, text in row["res"].get("commands", {}).items():
        print(f"    database commands per {LABELS[op]}: {text}", file=sys.stderr, flush=flush)


def table(all_rows):
    out = [f"voter per-request cost vs votes stored in one election; {os.cpu_count()} cores "
           f"(shared machine: spread in the p99 column); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]
    for backend, rows in all_rows.items():
        error = [r["error"] for r in rows if "error" in r]
        rows = [r for r in rows if "error" not in r]
        if not rows:
            continue
        out.append("")
        what = {"sqlite": "SQLite", "postgresql": "PostgreSQL 15 + companion GIN indexes (scripts/postgresql-init.sql)",
                "postgresql-plain": "PostgreSQL 15, FerretDB's own btree indexes only"}[backend]
        out.append(f"FerretDB v1.24.2 on {what}: p50 / p99 in ms (n = samples; - = not measured, see BENCH_PAGE_MAX)")
        head = f"  {'operation':<32}" + "".join(f"{r['stored']:>22,}" for r in rows)
        if len(rows) > 1:
            head += f"{'last/first p50':>16}"
        out.append(head)
        for op in OPS:
            line = f"  {LABELS[op]:<32}"
            have = [r for r in rows if r["res"].get(op)]
            for r in rows:
                xs = r["res"].get(op)
                line += f"{p50(xs):>10.2f} /{p99(xs):>8.2f} ({len(xs):>2})" if xs else f"{'-':>22}"
            if len(have) > 1:
                line += f"{p50(have[-1]['res'][op]) / p50(have[0]['res'][op]):>15.1f}x"
            out.append(line)
        for op in ("post", "post_idem"):
            for r in rows:
                if r["res"].get("commands"):
                    out.append(f"  database commands per {LABELS[op]} at {r['stored']:,}: {r['res']['commands'][op]}")
        out.append(f"  {'bulk ingestion of the step':<32}" + "".join(f"{r['ingest']:>15.0f} votes/s" for r in rows))
        out.append(f"  {f'raw insert_many ({RAW_PER_CALL} per call)':<32}" + "".join(f"{r['raw_ingest']:>15.0f} votes/s" for r in rows))
        out.append(f"  {'raw insert_many, two streams':<32}" + "".join(f"{r['raw_ingest_2']:>15.0f} votes/s" for r in rows))
        out.append(f"  {'database memory (PSS)':<32}" + "".join(f"{r['mem']:>18.0f} MiB" for r in rows))
        out.append(f"  {'voter service memory (PSS)':<32}" + "".join(f"{r['voter_mem']:>18.0f} MiB" for r in rows))
        if error:
            out.append(f"  stopped after the last column: {error[0]}")
    return "\n".join(out)


def report(text, name):
    """Prints text and keeps it as bench/results/<name>-<UTC time>.txt."""
    print(text)
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt").write_text(text + "\n")


def main():
    build = Path(os.environ["VOTER_BENCH_BUILD_DIR"])
    all_rows = {}
    for backend in DBS:
        all_rows[backend] = run_backend(backend, build)
    report(table(all_rows), "scale")


if __name__ == "__main__":
    main()
