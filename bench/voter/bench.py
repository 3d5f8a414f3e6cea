#!/usr/bin/python3
"""Voter benchmarks, each beside its reference in the same run.

1. Event propagation: POST /election/elections acknowledged -> the election visible in the
   voter service's replica (read straight from its database, polled every 0.5 ms), at a
   steady rate; beside it, raw RabbitMQ publish (with confirm) -> consume latency at the
   same rate on the same broker.
2. Results as votes grow: GET /voter/results/{election} (served from tallies kept up to
   date on write) beside the aggregation the original ran per request ($match + $group over
   every vote) issued directly against the same database, at 1k / 5k / 10k votes.

Needs AMQP_URL and MONGODB_URI (bench/voter/run starts a private RabbitMQ and FerretDB)
and VOTER_BENCH_BUILD_DIR with release binaries.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pika
import pymongo
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import harness  # noqa: E402
from events import candidate_data, cloud_event, publish  # noqa: E402

RATE = float(os.environ.get("BENCH_RATE", "20"))          # writes per second
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
SIZES = [int(x) for x in os.environ.get("BENCH_VOTES", "1000,5000,10000").split(",")]
INGEST = int(os.environ.get("BENCH_INGEST", "100000"))   # votes for the ingestion/throughput part


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def start(name, env, log_dir):
    svc = harness.Service(name, Path(os.environ["VOTER_BENCH_BUILD_DIR"]) / name / f"voter-{name}",
                          env, f"/{name}/ready", log_dir / f"{name}.log")
    svc.start()
    svc.wait_ready(30)
    return svc


def propagation(election, mongo_uri, voter_db):
    db = pymongo.MongoClient(mongo_uri)[voter_db]
    lat = []
    interval = 1.0 / RATE
    n = int(RATE * SECONDS)
    next_t = time.monotonic()
    for i in range(n):
        next_t += interval
        title = f"bench {uuid.uuid4().hex[:8]}"
        r = requests.post(f"{election.url}/election/elections", json={"title": title, "date": "2020-11-03"})
        t0 = time.monotonic()
        assert r.status_code == 201, r.text
        while db.elections.find_one({"title": title, "deleted": False}, {"_id": 1}) is None:
            time.sleep(0.0005)
        lat.append(time.monotonic() - t0)
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return lat


def raw_rabbit(url):
    """Publish (persistent, confirmed) -> consume latency on a durable queue, same rate."""
    n = int(RATE * SECONDS)
    q = f"bench.raw.{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    lat, sent = [], {}

    def consume():
        c2 = pika.BlockingConnection(pika.URLParameters(url))
        for method, _props, body in c2.channel().consume(q, auto_ack=True, inactivity_timeout=0.001):
            if method is not None:
                lat.append(time.monotonic() - sent[body])
            if len(lat) >= n:
                break
        c2.close()

    t = threading.Thread(target=consume)
    t.start()
    interval = 1.0 / RATE
    next_t = time.monotonic()
    for i in range(n):
        next_t += interval
        body = f"m{i}".encode()
        sent[body] = time.monotonic()
        ch.basic_publish("", q, body, pika.BasicProperties(delivery_mode=2))
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    t.join()
    ch.queue_delete(q)
    conn.close()
    return lat


def results_vs_aggregation(voter, mongo_uri, voter_db, amqp_url, exchange):
    title = "Bench Election"
    names = [f"Candidate {i}" for i in range(8)]
    events = [cloud_event("election.created", f"{1:024x}", 1,
                          {"id": f"{1:024x}", "title": title, "date": "2020-11-03T00:00:00.000+0000"})]
    for i, n in enumerate(names):
        first, last = n.split()
        cid = f"{100 + i:024x}"
        events.append(cloud_event("candidate.created", cid, 1, candidate_data(cid, first, last, title)))
    publish(amqp_url, exchange, events)
    harness.wait_until(lambda: requests.get(f"{voter.url}/voter/candidates").json()["page"]["totalElements"] == 8,
                       timeout=30)
    db = pymongo.MongoClient(mongo_uri)[voter_db]
    rows, have = [], 0
    for size in SIZES:
        while have < size:
            chunk = min(5000, size - have)
            body = "\n".join(json.dumps({"candidate": names[(have + k) % 8], "election": title})
                             for k in range(chunk))
            r = requests.post(f"{voter.url}/voter/votes/batch", data=body,
                              headers={"Content-Type": "application/x-ndjson"})
            assert r.status_code == 202, r.text
            loc = r.headers["Location"]
            harness.wait_until(lambda: requests.get(loc).json()["status"] == "completed", timeout=300)
            have += chunk
        url = f"{voter.url}/voter/results/{quote(title)}"
        service = []
        for _ in range(30):
            t0 = time.monotonic()
            r = requests.get(url)
            service.append(time.monotonic() - t0)
        assert sum(x["votes"] for x in r.json()["results"]) == size
        agg = []
        pipeline = [{"$match": {"election": title}}, {"$group": {"_id": "$candidate", "n": {"$sum": 1}}}]
        for _ in range(5):
            t0 = time.monotonic()
            out = list(db.votes.aggregate(pipeline))
            agg.append(time.monotonic() - t0)
        assert sum(x["n"] for x in out) == size
        rows.append((size, statistics.median(service) * 1000, statistics.median(agg) * 1000))
    return rows


def raw(args):
    out = subprocess.run([str(Path(os.environ["VOTER_BENCH_BUILD_DIR"]) / "bench" / "raw_votes")] + args,
                         capture_output=True, text=True, check=True).stdout
    return dict(kv.split("=") for kv in out.split())


def wrk_rps(url, seconds=10):
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return rps, float(p99.group(1)) * scale


def ingestion_and_throughput(voter, mongo_uri, amqp_url, exchange):
    """INGEST votes through POST /voter/votes/batch (NDJSON, 10k per request) until every
    batch completed, beside raw insert_many of as many votes; then GET /voter/results
    throughput over those votes beside the raw per-request aggregation."""
    title = "Bench Ingest"
    names = [f"Candidate {i}" for i in range(8)]
    events = [cloud_event("election.created", f"{2:024x}", 1,
                          {"id": f"{2:024x}", "title": title, "date": "2020-11-03T00:00:00.000+0000"})]
    for i, n in enumerate(names):
        first, last = n.split()
        cid = f"{200 + i:024x}"
        events.append(cloud_event("candidate.created", cid, 1, candidate_data(cid, first, last, title)))
    publish(amqp_url, exchange, events)
    harness.wait_until(lambda: len(requests.get(f"{voter.url}/voter/candidates/{quote(title)}").json()
                                   ["candidates"]) == 8, timeout=30)
    t0 = time.monotonic()
    locations, sent = [], 0
    while sent < INGEST:
        n = min(10000, INGEST - sent)
        body = "\n".join(json.dumps({"candidate": names[(sent + k) % 8], "election": title}) for k in range(n))
        r = requests.post(f"{voter.url}/voter/votes/batch", data=body,
                          headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 202, r.text
        locations.append(r.headers["Location"])
        sent += n
    accepted_s = time.monotonic() - t0
    for loc in locations:
        harness.wait_until(lambda: requests.get(loc).json()["status"] == "completed", timeout=1800)
    service_s = time.monotonic() - t0
    total = requests.get(f"{voter.url}/voter/results/{quote(title)}/votes").json()["votes"]
    assert total == INGEST, total
    raw_ins = raw([mongo_uri, "bench_raw", title, "insert", str(INGEST)])
    svc_rps, svc_p99 = wrk_rps(f"{voter.url}/voter/results/{quote(title)}")
    agg = raw([mongo_uri, "bench_raw", title, "aggregate", "10"])
    return {"accepted_s": accepted_s, "service_s": service_s, "raw_s": float(raw_ins["seconds"]),
            "svc_rps": svc_rps, "svc_p99": svc_p99, "agg_qps": float(agg["qps"]),
            "agg_p99": float(agg["p99_ms"])}


def main():
    amqp_url, mongo_uri = os.environ["AMQP_URL"], os.environ["MONGODB_URI"]
    exchange = "voter.events"
    log_dir = Path(os.environ.get("VOTER_RUN_DIR", "/tmp")) / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    common = {"MONGODB_URI": mongo_uri, "AMQP_URL": amqp_url, "AMQP_EXCHANGE": exchange,
              "LOG_LEVEL": "warn", "HTTP_HOST": "127.0.0.1"}
    election = start("election", dict(common, HTTP_PORT=str(harness.free_port()),
                                      MONGODB_DATABASE="bench_election"), log_dir)
    voter = start("voter", dict(common, HTTP_PORT=str(harness.free_port()), MONGODB_DATABASE="bench_voter",
                                HTTP_MAX_BODY=str(8 * 1024 * 1024)), log_dir)
    try:
        prop = propagation(election, mongo_uri, "bench_voter")
        raw = raw_rabbit(amqp_url)
        rows = results_vs_aggregation(voter, mongo_uri, "bench_voter", amqp_url, exchange)
        big = ingestion_and_throughput(voter, mongo_uri, amqp_url, exchange) if INGEST else None
    finally:
        voter.stop()
        election.stop()
    out = []
    out.append(f"event propagation at {RATE:g} writes/s for {SECONDS:g}s ({len(prop)} samples), {os.cpu_count()} cores")
    out.append(f"  write ack -> voter replica   p50 {pct(prop, .5):7.2f} ms   p99 {pct(prop, .99):7.2f} ms")
    out.append(f"  raw RabbitMQ publish->consume p50 {pct(raw, .5):7.2f} ms   p99 {pct(raw, .99):7.2f} ms")
    out.append(f"  ratio p50 {pct(prop, .5) / pct(raw, .5):.1f}x   p99 {pct(prop, .99) / pct(raw, .99):.1f}x")
    out.append("results latency (median) as votes grow: tallies (service, over HTTP) vs per-request aggregation (driver)")
    for size, svc_ms, agg_ms in rows:
        out.append(f"  {size:>7} votes   service {svc_ms:8.2f} ms   aggregation {agg_ms:9.2f} ms   aggregation/service {agg_ms / svc_ms:6.1f}x")
    if big:
        out.append(f"bulk ingestion of {INGEST} votes (NDJSON, 10k per request), same FerretDB")
        out.append(f"  service: all accepted (202) after {big['accepted_s']:.1f} s, all written after "
                   f"{big['service_s']:.1f} s = {INGEST / big['service_s']:.0f} votes/s")
        out.append(f"  raw insert_many (500 per call, one client): {big['raw_s']:.1f} s = "
                   f"{INGEST / big['raw_s']:.0f} votes/s   ratio service/raw {big['raw_s'] / big['service_s']:.2f}")
        out.append(f"GET /voter/results at {INGEST} votes (wrk 8 connections, 10 s) vs the per-request aggregation")
        out.append(f"  service (tallies): {big['svc_rps']:.0f} req/s, p99 {big['svc_p99']:.1f} ms")
        out.append(f"  raw aggregation (mongo-c-driver, one client): {big['agg_qps']:.2f} queries/s, "
                   f"p99 {big['agg_p99']:.0f} ms   ratio {big['svc_rps'] / big['agg_qps']:.0f}x")
    text = "\n".join(out)
    print(text)
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / f"voter-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
