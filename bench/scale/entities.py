#!/usr/bin/python3
"""Per-request cost of the election and candidate services as their collections grow
(issue 15: "election and candidate reads and writes likewise flat in the size of their
collections"), beside raw pymongo find_one({_id}) on the same database.

A private RabbitMQ and FerretDB on PostgreSQL with the companion GIN indexes (as
scripts/stack runs them) and release election and candidate services are started. Each
size is reached by inserting copies of a document the service itself wrote (pymongo
insert_many: the same shape, a new _id and a unique title or name; no outbox entries, so
nothing is published for them), and at each size it measures (median and p99 over
BENCH_SAMPLES requests):

  POST (a new election; a new candidate of the seeded election), GET /{id} of a seeded
  document, PUT of a seeded document with If-Match, and raw find_one({_id}).

Not measured: listings (sorted by a field) and the searches (substring: ...Contains,
...Containing), which read every document on FerretDB 1.24 (docs/design.md, "Listing
votes"), as a substring search without a text index does on MongoDB too.

Environment: BENCH_ENTITY_SIZES ("1000,10000,100000"), BENCH_SAMPLES (40), BENCH_BUDGET
(20 s), VOTER_BENCH_BUILD_DIR (release binaries, set by bench/scale/run-entities).
"""

import os
import random
import sys
import time
import uuid
from pathlib import Path

import pymongo
from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Client, p50, p99, report, timed  # noqa: E402

import harness  # noqa: E402  (bench puts tests/ on the path)

SIZES = [int(x) for x in os.environ.get("BENCH_ENTITY_SIZES", "1000,10000,100000").split(",") if x]
EXCHANGE = "voter.events"
OPS = ["post", "get_id", "put", "raw_find"]
LABELS = {"post": "POST", "get_id": "GET /{id}", "put": "PUT /{id} (If-Match; GET + PUT)",
          "raw_find": "raw find_one {_id} (pymongo)"}


def admin(client, method, url, **kw):
    path = "/" + url.split("/", 3)[3].split("?")[0]
    headers = {**kw.pop("headers", {}), **harness.proof_headers(method, path)}
    return client.request(method, url, headers=headers, json_body=kw.pop("json", None), params=kw.pop("params", None))


def seed(coll, model, n, unique, key):
    """Inserts n copies of model with new ids, a unique value of the field unique and of the
    service's unique key (which it derives from that field)."""
    batch = []
    for i in range(n):
        doc = dict(model, _id=ObjectId())
        tag = uuid.uuid4().hex[:12]
        doc[unique] = f"{model[unique]} seed {tag}"
        doc[key] = f"{model[key]}\x1fseed {tag}"
        batch.append(doc)
        if len(batch) == 1000:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)


def measure(client, base, path, body_of, coll):
    ids = [str(d["_id"]) for d in coll.find({}, {"_id": 1}).limit(200)]
    res = {"post": timed(lambda: _ok(admin(client, "POST", f"{base}{path}", json=body_of()), 201))}
    res["get_id"] = timed(lambda: _ok(client.get(f"{base}{path}/{random.choice(ids)}"), 200))

    def put():
        vid = random.choice(ids)
        got = client.get(f"{base}{path}/{vid}")
        _ok(got, 200)
        item = got.json()
        body = {k: v for k, v in item.items() if k not in ("_links", "id", "version", "fullName")}
        _ok(admin(client, "PUT", f"{base}{path}/{vid}", json=body,
                  headers={"If-Match": got.headers.get("ETag", "")}), 200)
    res["put"] = timed(put)
    oids = [ObjectId(i) for i in ids]
    res["raw_find"] = timed(lambda: coll.find_one({"_id": random.choice(oids)}))
    return res


def _ok(r, status):
    assert r.status_code == status, f"{r.status_code} {r.text[:200]}"
    return r


def main():
    build = Path(os.environ["VOTER_BENCH_BUILD_DIR"])
    run_dir = harness.make_run_dir("voter-bench-entities-")
    rabbit = harness.RabbitMQ(run_dir / "rabbitmq").start()
    mongo = harness.FerretDB(run_dir / "ferretdb", backend="postgresql").start()
    common = {"MONGODB_URI": mongo.uri, "AMQP_URL": rabbit.url, "AMQP_EXCHANGE": EXCHANGE,
              "LOG_LEVEL": "warn", "HTTP_HOST": "127.0.0.1", "GATEWAY_PROOF_SECRET": harness.PROOF_SECRET}
    election = harness.Service("election", build / "election" / "voter-election",
                               {**common, "HTTP_PORT": str(harness.free_port()), "MONGODB_DATABASE": "bench_election"},
                               "/election/ready", run_dir / "election.log")
    candidate = harness.Service("candidate", build / "candidate" / "voter-candidate",
                                {**common, "HTTP_PORT": str(harness.free_port()), "MONGODB_DATABASE": "bench_candidate"},
                                "/candidate/ready", run_dir / "candidate.log")
    rows = []
    ok = False
    try:
        for svc in (election, candidate):
            svc.start()
            svc.wait_ready(60)
        client = Client()
        db = pymongo.MongoClient(mongo.uri)
        title = "Bench Election"
        _ok(admin(client, "POST", f"{election.url}/election/elections",
                  json={"title": title, "date": "2024-11-05", "electionType": "FEDERAL", "description": "bench"}), 201)
        harness.wait_until(lambda: admin(client, "POST", f"{candidate.url}/candidate/candidates", json={
            "firstName": "Model", "lastName": "Candidate", "politicalParty": "None", "election": title,
            "homeState": "NY", "politcalExperience": "none"}).status_code == 201, timeout=60,
            message="the candidate service knows the election")
        elections = db["bench_election"]["elections"]
        candidates = db["bench_candidate"]["candidates"]
        e_model = {k: v for k, v in elections.find_one({"title": title}).items() if k != "_id"}
        c_model = {k: v for k, v in candidates.find_one({"lastName": "Candidate"}).items() if k != "_id"}
        have = 1
        for size in SIZES:
            seed(elections, e_model, size - have, "title", "titleKey")
            seed(candidates, c_model, size - have, "firstName", "nameKey")
            have = size
            row = {"size": size}
            row["election"] = measure(
                client, election.url, "/election/elections",
                lambda: {"title": f"bench {uuid.uuid4().hex}", "date": "2024-11-05", "electionType": "FEDERAL"},
                elections)
            row["candidate"] = measure(
                client, candidate.url, "/candidate/candidates",
                lambda: {"firstName": uuid.uuid4().hex[:10], "lastName": "Bench", "politicalParty": "None",
                         "election": title, "homeState": "NY", "politcalExperience": "none"},
                candidates)
            rows.append(row)
            print(f"[entities] {size:,} documents each: measured", file=sys.stderr, flush=True)
        ok = True
    finally:
        for svc in (candidate, election):
            svc.stop()
        mongo.stop()
        rabbit.stop()
        if ok:
            harness.remove_run_dir(run_dir)
        else:
            print(f"bench: run directory kept: {run_dir}", file=sys.stderr)
    out = [f"election and candidate per-request cost vs documents stored; FerretDB v1.24.2 on PostgreSQL 15 "
           f"+ companion GIN indexes; 2 cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
           "p50 / p99 in ms (n)"]
    for svc in ("election", "candidate"):
        out.append(f"  {svc:<38}" + "".join(f"{r['size']:>22,}" for r in rows) + "  last/first p50")
        for op in OPS:
            if op not in rows[0][svc]:
                continue
            line = f"  {LABELS[op]:<38}"
            for r in rows:
                xs = r[svc][op]
                line += f"  {p50(xs):7.2f} / {p99(xs):7.2f} ({len(xs):2d})"
            line += f"{p50(rows[-1][svc][op]) / p50(rows[0][svc][op]):>15.1f}x"
            out.append(line)
    report("\n".join(out), "entities")


if __name__ == "__main__":
    main()
