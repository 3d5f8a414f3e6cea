#!/usr/bin/python3
"""Vote POST throughput through the gateway with one and with two voter replicas (issue 15),
beside the same requests sent straight to one replica (the gateway's own cost), in the same
run on the same RabbitMQ and FerretDB.

Two voter processes (VOTER_INSTANCE 1 and 2: each counts into its own tally shard) share
one database. Two gateways run side by side, one routing /voter to replica 1 only, the
other to both; rounds are interleaved (a different order each round) so the load of a
shared machine falls on every cell alike. Each cell reports the median of its rounds,
their spread (min-max), the median p99 and the load average around its rounds. wrk: 2
threads, BENCH_CONNECTIONS (16) connections, plain votes (no Idempotency-Key), a paid key
(the anonymous tier is rate-limited). Afterwards the stored votes must equal the sum of
the 201s and the results (both replicas' shards) must equal a recount.

Needs AMQP_URL and MONGODB_URI (bench/voter/run starts a private RabbitMQ and FerretDB)
and VOTER_BENCH_BUILD_DIR with release binaries of voter-voter and voter-gateway.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pymongo
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import harness  # noqa: E402
from events import candidate_data, cloud_event, publish  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
TITLE = "Bench Idempotency"  # the election vote.lua votes in
SCRIPT = Path(__file__).resolve().parent / "vote.lua"
KEY = uuid.uuid4().hex
DATABASE = "bench_replicas"


def wrk(url):
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(SCRIPT),
                          url, "--", "plain", uuid.uuid4().hex[:8], KEY],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    failed = int(bad.group(1)) if bad else 0
    failed += sum(int(x) for x in errors.groups()) if errors else 0
    return rps, float(p99.group(1)) * scale, failed, total


def load1():
    return float(Path("/proc/loadavg").read_text().split()[0])


def main():
    amqp_url, mongo_uri = os.environ["AMQP_URL"], os.environ["MONGODB_URI"]
    build = Path(os.environ["VOTER_BENCH_BUILD_DIR"])
    run_dir = Path(os.environ.get("VOTER_RUN_DIR", "/tmp")) / "bench-replicas"
    run_dir.mkdir(parents=True, exist_ok=True)
    keys = run_dir / "keys.json"
    keys.write_text(json.dumps({KEY: "paid"}))
    exchange = "voter.events"
    procs = []
    try:
        voters = []
        for i in (1, 2):
            env = {"MONGODB_URI": mongo_uri, "AMQP_URL": amqp_url, "AMQP_EXCHANGE": exchange,
                   "LOG_LEVEL": "warn", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(harness.free_port()),
                   "MONGODB_DATABASE": DATABASE, "VOTER_INSTANCE": str(i)}
            svc = harness.Service("voter", build / "voter" / "voter-voter", env, "/voter/ready",
                                  run_dir / f"voter-{i}.log")
            procs.append(svc.start())
            svc.wait_ready(60)
            voters.append(svc)
        events = [cloud_event("election.created", f"{3:024x}", 1,
                              {"id": f"{3:024x}", "title": TITLE, "date": "2020-11-03T00:00:00.000+0000"})]
        for i in range(8):
            cid = f"{300 + i:024x}"
            events.append(cloud_event("candidate.created", cid, 1, candidate_data(cid, "Candidate", str(i), TITLE)))
        publish(amqp_url, exchange, events)
        for svc in voters:
            harness.wait_until(lambda: requests.get(f"{svc.url}/voter/candidates").json()["page"]
                               ["totalElements"] == 8, timeout=60)
        gateways = {}
        for name, group in (("one", voters[:1]), ("two", voters)):
            path = harness.replica_gateway_config({"voter": [v.url for v in group]},
                                                  run_dir / f"gateway-{name}.json", keys, access_log=False)
            env = {"HTTP_PORT": str(harness.free_port()), "GATEWAY_CONFIG": str(path),
                   "GATEWAY_KEYS_FILE": str(keys), "LOG_LEVEL": "warn",
                   "GATEWAY_PROOF_SECRET": harness.PROOF_SECRET}
            gw = harness.Service("gateway", build / "gateway" / "voter-gateway", env, "/gateway/health",
                                 run_dir / f"gateway-{name}.log")
            procs.append(gw.start())
            gw.wait_ready(60)
            gateways[name] = gw
        urls = {"one replica via gateway": f"{gateways['one'].url}/voter/votes",
                "two replicas via gateway": f"{gateways['two'].url}/voter/votes",
                "one replica, no gateway": f"{voters[0].url}/voter/votes"}
        runs = {c: [] for c in urls}
        loads = {c: [] for c in urls}
        rng = random.Random(1)
        for _ in range(ROUNDS):
            order = list(urls)
            rng.shuffle(order)
            for cell in order:
                before = load1()
                runs[cell].append(wrk(urls[cell]))
                loads[cell].append((before + load1()) / 2)
        db = pymongo.MongoClient(mongo_uri)[DATABASE]
        harness.wait_until(lambda: db.votes.count_documents({"tallied": False}) == 0, timeout=60)
        stored = db.votes.count_documents({"deleted": False})
        per_replica = {s: db.votes.count_documents({"shard": s}) for s in ("1", "2")}
        results = {r["candidate"]: r["votes"] for r in
                   requests.get(f"{voters[1].url}/voter/results/{TITLE}").json()["results"]}
        recount = {}
        for d in db.votes.find({"deleted": False, "election": TITLE}, {"candidate": 1}):
            recount[d["candidate"]] = recount.get(d["candidate"], 0) + 1
    finally:
        for svc in reversed(procs):
            svc.stop()
    out = [f"POST /voter/votes through voter-gateway, wrk 2 threads {CONNECTIONS} connections "
           f"{SECONDS}s x {ROUNDS} interleaved rounds, {os.cpu_count()} cores shared with the other "
           f"sessions, one FerretDB (PostgreSQL) and RabbitMQ, release build"]
    for cell in urls:
        r = runs[cell]
        rps = [x[0] for x in r]
        bad = sum(x[2] for x in r)
        out.append(f"  {cell:26} median {statistics.median(rps):7.0f} req/s (min {min(rps):.0f}, "
                   f"max {max(rps):.0f})   p99 median {statistics.median(x[1] for x in r):7.1f} ms   "
                   f"load {min(loads[cell]):.1f}-{max(loads[cell]):.1f}" + (f"   FAILED {bad}" if bad else ""))
    med = {c: statistics.median(x[0] for x in runs[c]) for c in urls}
    out.append(f"  two/one replicas via gateway: {med['two replicas via gateway'] / med['one replica via gateway']:.2f}x;"
               f"   gateway/direct (one replica): {med['one replica via gateway'] / med['one replica, no gateway']:.2f}x")
    sent = sum(x[3] - x[2] for c in urls for x in runs[c])
    cut = CONNECTIONS * ROUNDS * len(urls)  # requests wrk had sent when each run's time was up
    out.append(f"  votes stored {stored}: answered with 2xx {sent}, plus at most {cut} in flight when wrk "
               f"stopped ({stored - sent}); by replica shard {per_replica}; results equal a recount: "
               f"{results == recount}")
    text = "\n".join(out)
    print(text)
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / f"voter-replicas-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt").write_text(text + "\n")
    if results != recount or bad or not 0 <= stored - sent <= cut:
        sys.exit(1)


if __name__ == "__main__":
    main()
