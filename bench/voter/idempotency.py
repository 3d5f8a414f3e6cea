#!/usr/bin/python3
"""POST /voter/votes with and without Idempotency-Key, before (a baseline build, by default
main) and after (this tree), in the same run on the same RabbitMQ and FerretDB.

Rounds are interleaved (before/after, plain/keyed, in a different order each round) so
that the load of a shared machine falls on all four alike; each cell reports the median of
its rounds, their spread (min-max) and the median p99. wrk: 2 threads, 8 connections.

Needs AMQP_URL and MONGODB_URI (bench/voter/run starts a private RabbitMQ and FerretDB),
VOTER_BENCH_BUILD_DIR (after) and VOTER_BENCH_BASELINE_DIR (before) with release binaries.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import harness  # noqa: E402
from events import candidate_data, cloud_event, publish  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
TITLE = "Bench Idempotency"
SCRIPT = Path(__file__).resolve().parent / "vote.lua"


def wrk(url, mode):
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{SECONDS}s", "--latency", "-s", str(SCRIPT), url,
                          "--", mode, uuid.uuid4().hex[:8]],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return rps, float(p99.group(1)) * scale, int(bad.group(1)) if bad else 0


def start(binary, name, env, log_dir):
    svc = harness.Service("voter", binary, env, "/voter/ready", log_dir / f"{name}.log")
    svc.start()
    svc.wait_ready(30)
    return svc


def main():
    amqp_url, mongo_uri = os.environ["AMQP_URL"], os.environ["MONGODB_URI"]
    after_bin = Path(os.environ["VOTER_BENCH_BUILD_DIR"]) / "voter" / "voter-voter"
    before_bin = Path(os.environ["VOTER_BENCH_BASELINE_DIR"]) / "voter" / "voter-voter"
    exchange = "voter.events"
    log_dir = Path(os.environ.get("VOTER_RUN_DIR", "/tmp")) / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    services = {}
    for name, binary in (("before", before_bin), ("after", after_bin)):
        env = {"MONGODB_URI": mongo_uri, "AMQP_URL": amqp_url, "AMQP_EXCHANGE": exchange,
               "AMQP_QUEUE_PREFIX": f"{name}.", "LOG_LEVEL": "warn", "HTTP_HOST": "127.0.0.1",
               "HTTP_PORT": str(harness.free_port()), "MONGODB_DATABASE": f"bench_idem_{name}"}
        services[name] = start(binary, name, env, log_dir)
    try:
        events = [cloud_event("election.created", f"{3:024x}", 1,
                              {"id": f"{3:024x}", "title": TITLE, "date": "2020-11-03T00:00:00.000+0000"})]
        for i in range(8):
            cid = f"{300 + i:024x}"
            events.append(cloud_event("candidate.created", cid, 1, candidate_data(cid, "Candidate", str(i), TITLE)))
        publish(amqp_url, exchange, events)
        for svc in services.values():
            harness.wait_until(lambda: requests.get(f"{svc.url}/voter/candidates").json()["page"]
                               ["totalElements"] == 8, timeout=30)
        cells = [(b, m) for b in ("before", "after") for m in ("plain", "keyed")]
        runs = {c: [] for c in cells}
        rng = random.Random(1)
        for _ in range(ROUNDS):
            order = cells[:]
            rng.shuffle(order)
            for b, m in order:
                runs[(b, m)].append(wrk(f"{services[b].url}/voter/votes", m))
        totals = {b: requests.get(f"{s.url}/voter/results/{TITLE}/votes").json()["votes"]
                  for b, s in services.items()}
    finally:
        for svc in services.values():
            svc.stop()
    out = [f"POST /voter/votes, wrk 2 threads 8 connections {SECONDS}s x {ROUNDS} interleaved rounds, "
           f"{os.cpu_count()} cores, one FerretDB (SQLite) and RabbitMQ"]
    for b, m in cells:
        r = runs[(b, m)]
        rps = [x[0] for x in r]
        bad = sum(x[2] for x in r)
        out.append(f"  {b:6} {m:5}  median {statistics.median(rps):7.0f} req/s (min {min(rps):.0f}, "
                   f"max {max(rps):.0f})   p99 median {statistics.median(x[1] for x in r):6.1f} ms"
                   + (f"   NON-2xx {bad}" if bad else ""))
    med = {c: statistics.median(x[0] for x in runs[c]) for c in cells}
    out.append(f"  keyed/plain throughput: before {med[('before', 'keyed')] / med[('before', 'plain')]:.2f}, "
               f"after {med[('after', 'keyed')] / med[('after', 'plain')]:.2f};   "
               f"after/before keyed {med[('after', 'keyed')] / med[('before', 'keyed')]:.2f}")
    out.append(f"  votes stored: before {totals['before']}, after {totals['after']}")
    text = "\n".join(out)
    print(text)
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / f"voter-idempotency-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
