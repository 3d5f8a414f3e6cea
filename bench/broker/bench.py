#!/usr/bin/python3
"""Event propagation on a one-node RabbitMQ and on a three-node cluster, each beside raw
publish -> consume on the same broker, in one run.

For each broker (started here: harness.RabbitMQ, then harness.RabbitCluster):

  service  POST /election/elections acknowledged -> the election visible in the voter
           service's replica (its database, polled every 0.5 ms): outbox relay, publish
           with confirm, quorum queue, consumer, versioned write. Services get AMQP_URL as
           the broker's URL (the list of the three nodes for the cluster).
  raw      pika: persistent publish with confirm to a quorum queue -> consume (auto-ack)
           on another connection; on the cluster the publisher is on node 1 (the queue's
           leader) and the consumer on node 2, as a service on another node would be.

Both at the same steady rate (BENCH_RATE per second for BENCH_SECONDS). Prints p50/p99
(and min/median/max) per row, the service/raw ratio per broker and the cluster/one-node
ratio, with the load average before and after. Needs MONGODB_URI (bench/broker/run
starts FerretDB) and VOTER_BENCH_BUILD_DIR with release binaries.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import pika
import pymongo
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import harness  # noqa: E402

RATE = float(os.environ.get("BENCH_RATE", "20"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def summary(samples):
    ms = [x * 1000 for x in samples]
    return {"n": len(ms), "p50": pct(samples, 0.5), "p99": pct(samples, 0.99), "min": min(ms),
            "median": statistics.median(ms), "max": max(ms)}


def start_service(name, env, log_dir):
    svc = harness.Service(name, Path(os.environ["VOTER_BENCH_BUILD_DIR"]) / name / f"voter-{name}",
                          env, f"/{name}/ready", log_dir / f"{name}.log")
    svc.start()
    svc.wait_ready(60)
    return svc


def steady(n, fn):
    """Calls fn(i) n times at RATE per second."""
    interval = 1.0 / RATE
    next_t = time.monotonic()
    for i in range(n):
        next_t += interval
        fn(i)
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def propagation(election, db):
    lat = []

    def one(i):
        title = f"bench {uuid.uuid4().hex[:8]}"
        r = requests.post(f"{election.url}/election/elections", json={"title": title, "date": "2020-11-03"})
        t0 = time.monotonic()
        assert r.status_code == 201, r.text
        while db.elections.find_one({"title": title, "deleted": False}, {"_id": 1}) is None:
            time.sleep(0.0005)
        lat.append(time.monotonic() - t0)

    one(-1)  # warm-up: connections, the first write
    lat.clear()
    steady(int(RATE * SECONDS), one)
    return lat


def raw(pub_url, sub_url):
    n = int(RATE * SECONDS)
    q = f"bench.broker.raw.{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(pub_url))
    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
    ch.confirm_delivery()
    lat, sent = [], {}
    ready = threading.Event()

    def consume():
        c2 = pika.BlockingConnection(pika.URLParameters(sub_url))
        ch2 = c2.channel()
        ch2.basic_qos(prefetch_count=32)
        ready.set()
        for method, _props, body in ch2.consume(q, auto_ack=True, inactivity_timeout=0.001):
            if method is not None and body in sent:
                lat.append(time.monotonic() - sent[body])
            if len(lat) >= n:
                break
        c2.close()

    t = threading.Thread(target=consume)
    t.start()
    ready.wait(30)
    time.sleep(0.5)

    def one(i):
        body = f"m{i}".encode()
        sent[body] = time.monotonic()
        ch.basic_publish("", q, body, pika.BasicProperties(delivery_mode=2))

    steady(n, one)
    t.join(60)
    ch.queue_delete(q)
    conn.close()
    return lat


def measure(label, broker, mongo_uri, log_dir):
    ns = uuid.uuid4().hex[:8]
    common = {"HTTP_HOST": "127.0.0.1", "MONGODB_URI": mongo_uri, "AMQP_URL": broker.url,
              "AMQP_EXCHANGE": f"bench.events.{ns}", "AMQP_QUEUE_PREFIX": f"{ns}.",
              "LOG_LEVEL": "warn", "GATEWAY_PROOF_SECRET": harness.PROOF_SECRET}
    election = start_service("election", {**common, "HTTP_PORT": str(harness.free_port()),
                                          "MONGODB_DATABASE": f"election_{ns}"}, log_dir / label)
    voter = start_service("voter", {**common, "HTTP_PORT": str(harness.free_port()),
                                    "MONGODB_DATABASE": f"voter_{ns}"}, log_dir / label)
    try:
        db = pymongo.MongoClient(mongo_uri)[f"voter_{ns}"]
        service = propagation(election, db)
    finally:
        voter.stop()
        election.stop()
    if isinstance(broker, harness.RabbitCluster):
        raw_lat = raw(broker.nodes[0].url, broker.nodes[1].url)
    else:
        raw_lat = raw(broker.url, broker.url)
    return summary(service), summary(raw_lat)


def row(name, s):
    return (f"  {name:<34} p50 {s['p50']:7.2f} ms  p99 {s['p99']:7.2f} ms   "
            f"(min {s['min']:.2f} / median {s['median']:.2f} / max {s['max']:.2f}, n={s['n']})")


def main():
    mongo_uri = os.environ["MONGODB_URI"]
    run_dir = harness.make_run_dir("voter-bench-broker-")
    log_dir = run_dir / "logs"
    load0 = os.getloadavg()
    results = {}
    try:
        one = harness.RabbitMQ(run_dir / "one").start()
        try:
            results["one node"] = measure("one", one, mongo_uri, log_dir)
        finally:
            one.stop()
        cluster = harness.RabbitCluster(run_dir / "cluster", size=3).start()
        try:
            results["3-node cluster"] = measure("cluster", cluster, mongo_uri, log_dir)
        finally:
            cluster.stop()
    finally:
        load1 = os.getloadavg()
    harness.remove_run_dir(run_dir)
    print(f"\nEvent propagation, {RATE:g}/s for {SECONDS:g} s (quorum queues), "
          f"load average before {load0[0]:.2f} {load0[1]:.2f}, after {load1[0]:.2f} {load1[1]:.2f}, "
          f"{os.cpu_count()} cores")
    for label, (svc, rw) in results.items():
        print(f"{label}:")
        print(row("write -> voter replica (services)", svc))
        print(row("raw publish(confirm) -> consume", rw))
        print(f"  ratio services/raw: p50 {svc['p50'] / rw['p50']:.1f}x, p99 {svc['p99'] / rw['p99']:.1f}x")
    (s1, r1), (s3, r3) = results["one node"], results["3-node cluster"]
    print(f"cluster/one node: services p50 {s3['p50'] / s1['p50']:.2f}x p99 {s3['p99'] / s1['p99']:.2f}x; "
          f"raw p50 {r3['p50'] / r1['p50']:.2f}x p99 {r3['p99'] / r1['p99']:.2f}x")


if __name__ == "__main__":
    main()
