"""Chaos: concurrent retrying clients while every part of the system is SIGKILLed.

Clients cast keyed votes, submit keyed bulk batches, create/update/delete candidates and
submit tabulation jobs, each retrying the same request (same Idempotency-Key) on any
error or timeout until it is answered, as a careful client would. Meanwhile a driver
SIGKILLs the election, candidate, voter and jobs services, the broker and the database at
random moments (seeded; the seed is printed, VOTER_CHAOS_SEED replays it) and restarts
them. Afterwards, checked from the databases and the APIs, never from logs:

  * every acknowledged write is present exactly once (votes, batches, candidates, jobs);
  * tallies equal a recount of the votes; nothing left uncounted or "counting";
  * every replica equals its source (ids, versions, tombstones);
  * every job succeeded once with exactly one result;
  * the dead-letter queues are empty.

One summary line: "acknowledged N, lost 0, doubled 0, replicas converged in X s, seed S".

CI runs one round (every part killed at least once, VOTER_CHAOS_SECONDS=45 of traffic);
bench/chaos/run runs it for 10 minutes. test_chaos_two_replicas runs the same with two
replicas of election, candidate, voter and jobs against the same databases (issue 15):
each client attempt goes to either replica, as the gateway's balancing would, and every
replica is killed on its own (VOTER_CHAOS_REPLICA_SECONDS, default 30 s of traffic)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pika
import pymongo
import pytest
import requests
from bson import ObjectId

import harness
from harness import wait_until
from jobs_helpers import fixture, jobs_env, submit_json

SECONDS = float(os.environ.get("VOTER_CHAOS_SECONDS", "45"))
SEED = int(os.environ.get("VOTER_CHAOS_SEED") or random.SystemRandom().randrange(1, 10**9))
MAIN = "Chaos Election"
SIDE = "Chaos Side Election"
NAMES = [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Edsger", "Dijkstra")]
TIMEOUT = 10  # per HTTP attempt
GIVE_UP = 240  # a client that gets no answer for this long fails the test
REPLICA_SECONDS = float(os.environ.get("VOTER_CHAOS_REPLICA_SECONDS", "30"))
# After the chaos: how long the system may take to settle. Generous: on a loaded 2-core
# machine a sanitizer build applies a few events per second, and the AMQP clients' reconnect
# backoff (up to 30 s) has grown through the broker kills. A passing run does not wait it.
CONVERGE_S = float(os.environ.get("VOTER_CHAOS_CONVERGE_S", "300"))


def candidate_body(first, last, election, party="Independent"):
    return {"firstName": first, "lastName": last, "politicalParty": party, "election": election,
            "homeState": "NY", "politcalExperience": "none"}


@dataclass
class Ledger:
    """What the clients were told: the acknowledged history."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    votes: dict = field(default_factory=dict)         # vote id -> candidate
    vote_replies: Counter = field(default_factory=Counter)
    batches: dict = field(default_factory=dict)       # batch id -> accepted
    candidates: dict = field(default_factory=dict)    # candidate id -> party, or None: deleted
    candidate_writes: int = 0
    jobs: Counter = field(default_factory=Counter)    # job id -> acknowledgements (keys)
    retries: int = 0
    failures: list = field(default_factory=list)


class Chaos:
    def __init__(self, services, rabbit, mongo, seed):
        self.services = services
        self.rabbit = rabbit
        self.mongo = mongo
        self.rng = random.Random(seed)
        self.kills = Counter()
        self.stop = threading.Event()
        self.error = None

    def kill_broker(self):
        for pid in harness.process_tree(self.rabbit.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.rabbit._proc.wait(timeout=30)
        self.rabbit.stop(quiet=True)  # epmd and the bookkeeping
        time.sleep(self.rng.uniform(0.2, 2))
        self.rabbit.start()

    def kill_database(self):
        self.mongo.kill()
        time.sleep(self.rng.uniform(0.2, 2))
        self.mongo.start()

    def kill_service(self, svc):
        svc.kill()
        time.sleep(self.rng.uniform(0.2, 2))
        svc.start()
        svc.wait_ready(120)

    def run(self, seconds):
        targets = list(self.services) + ["broker", "database"]
        order = []
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline or len(self.kills) < len(targets):
                if not order:
                    order = targets[:]
                    self.rng.shuffle(order)
                time.sleep(self.rng.uniform(1.5, 5))
                target = order.pop()
                self.kills[target] += 1
                if target == "broker":
                    self.kill_broker()
                elif target == "database":
                    self.kill_database()
                else:
                    self.kill_service(self.services[target])
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.stop.set()


def answered(fn, ledger, ok=(200, 201, 202, 204)):
    """Retries fn until it is answered with something other than a connection error, a
    timeout or a 5xx; returns that response."""
    start = time.monotonic()
    first = True
    while True:
        if not first:
            with ledger.lock:
                ledger.retries += 1
            time.sleep(0.3)
        first = False
        try:
            r = fn()
        except requests.RequestException:
            r = None
        if r is not None and r.status_code < 500:
            return r
        if time.monotonic() - start > GIVE_UP:
            raise AssertionError(f"no answer for {GIVE_UP}s (last: {r and r.status_code})")


def client(name, stop, ledger, body):
    """Runs body(i) until stop is set; the request in progress is finished first."""
    def loop():
        i = 0
        try:
            while not stop.is_set():
                body(i)
                i += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            with ledger.lock:
                ledger.failures.append(f"{name}: {exc!r}")
    t = threading.Thread(target=loop, name=name, daemon=True)
    t.start()
    return t


def diagnose(rabbit, services, log_dir):
    """What a stuck run looks like from outside: queue depths and every thread's stack of
    each service (gdb, when installed). Returns a text for the failure message."""
    lines = []
    try:
        lines.append(rabbit.ctl("list_queues", "name", "messages_ready", "messages_unacknowledged",
                                "consumers", timeout=30))
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        lines.append(f"list_queues failed: {exc!r}")
    for name, svc in services.items():
        if svc.pid and os.path.exists("/usr/bin/gdb"):
            out = log_dir / f"chaos-{name}-stacks.txt"
            with open(out, "w") as f:
                import subprocess
                subprocess.run(["gdb", "-p", str(svc.pid), "-batch", "-ex", "thread apply all bt"],
                               stdout=f, stderr=subprocess.STDOUT, timeout=120)
            lines.append(f"{name} stacks: {out}")
    return "\n".join(lines)


class Pick:
    """The base URL of one replica of a service, chosen anew for every attempt (seeded)."""

    def __init__(self, services, suffix, seed):
        self.urls = [s.url + suffix for s in services]
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def __str__(self):
        with self.lock:
            return self.rng.choice(self.urls)


def test_chaos(service_factory, rabbit, mongo, ns, queue, tmp_path, capsys, run_dir):
    run_chaos(service_factory, rabbit, mongo, ns, queue, tmp_path, capsys, run_dir, 1, SECONDS)


def test_chaos_two_replicas(service_factory, rabbit, mongo, ns, queue, tmp_path, capsys, run_dir):
    run_chaos(service_factory, rabbit, mongo, ns, queue, tmp_path, capsys, run_dir, 2, REPLICA_SECONDS)


def run_chaos(service_factory, rabbit, mongo, ns, queue, tmp_path, capsys, run_dir, n, seconds):
    with capsys.disabled():
        print(f"\nchaos: seed {SEED} (VOTER_CHAOS_SEED={SEED} replays it), {seconds:g} s of traffic, "
              f"{n} replica(s) of each service")

    def replicas(name, env):
        # VOTER_INSTANCE: each voter replica counts into its own tally shard (votes.c)
        return [service_factory(name, env={**env, "VOTER_INSTANCE": str(i + 1)} if n > 1 else env)
                for i in range(n)]
    elections = replicas("election", {})
    candidates_ = replicas("candidate", {"ELECTION_URL": elections[0].url})
    voters_ = replicas("voter", {"RECONCILE_S": "2", "REPLICA_RETRY_MS": "300", "BATCH_CHUNK": "10",
                                 "CANDIDATE_URL": candidates_[0].url})
    jobs_ = [service_factory("jobs", env=jobs_env(tmp_path / f"work{i}", JOBS_LEASE_S=3)) for i in range(n)]
    election, candidate, voter, jobs = elections[0], candidates_[0], voters_[0], jobs_[0]
    eapi = Pick(elections, "/election", SEED)
    capi = Pick(candidates_, "/candidate", SEED + 1)
    vapi = Pick(voters_, "/voter", SEED + 2)
    japi = Pick(jobs_, "", SEED + 3)

    for title in (MAIN, SIDE):
        r = requests.post(f"{eapi}/elections", json={"title": title, "date": "2024-11-05",
                                                     "electionType": "FEDERAL"})
        assert r.status_code == 201, r.text
    voters = []
    for first, last in NAMES:
        r = wait_until(lambda: (lambda x: x if x.status_code == 201 else None)(
            requests.post(f"{capi}/candidates", json=candidate_body(first, last, MAIN))),
            timeout=30, message="the candidate service knows the election")
        voters.append(f"{first} {last}")
    for v in voters_:
        wait_until(lambda: requests.get(f"{v.url}/voter/candidates").json()["page"]["totalElements"] == 4,
                   timeout=30, message="the voter's replica has the candidates")

    ledger = Ledger()
    stop = threading.Event()
    fx = fixture("small-irv")

    def cast(worker):
        def body(i):
            who = voters[(hash((worker, i)) + SEED) % len(voters)]
            r = answered(lambda: requests.post(
                f"{vapi}/votes", json={"candidate": who, "election": MAIN},
                headers={"Idempotency-Key": f"vote-{worker}-{i}"}, timeout=TIMEOUT), ledger)
            assert r.status_code == 201, r.text
            with ledger.lock:
                ledger.votes[r.json()["id"]] = who
                ledger.vote_replies[r.json()["id"]] += 1
        return body

    def batch(i):
        votes = [{"candidate": voters[(i + k) % len(voters)], "election": MAIN} for k in range(25)]
        r = answered(lambda: requests.post(f"{vapi}/votes/batch", json=votes,
                                           headers={"Idempotency-Key": f"batch-{i}"}, timeout=TIMEOUT),
                     ledger)
        assert r.status_code == 202, r.text
        with ledger.lock:
            ledger.batches[r.json()["id"]] = r.json()["accepted"]
        time.sleep(2)  # a pace the worker sustains under chaos: the backlog must not grow forever

    def candidates(i):
        first, last = "Chaos", f"Number{i}"
        r = answered(lambda: requests.post(f"{capi}/candidates", json=candidate_body(first, last, SIDE),
                                           headers={"Idempotency-Key": f"cand-{i}"}, timeout=TIMEOUT),
                     ledger)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        party = f"Party {i}"
        r = answered(lambda: requests.put(f"{capi}/candidates/{cid}",
                                          json=candidate_body(first, last, SIDE, party), timeout=TIMEOUT),
                     ledger)
        assert r.status_code == 200, r.text
        with ledger.lock:
            ledger.candidates[cid] = party
            ledger.candidate_writes += 2
        if i % 3 == 0:
            retried = []

            def delete():
                retried.append(1)
                return requests.delete(f"{capi}/candidates/{cid}", timeout=TIMEOUT)
            r = answered(delete, ledger)
            # a retry of a delete that went through finds nothing: the delete happened
            assert r.status_code == 204 or (r.status_code == 404 and len(retried) > 1), r.text
            with ledger.lock:
                ledger.candidates[cid] = None
                ledger.candidate_writes += 1

    def submit(i):
        r = answered(lambda: submit_json(str(japi), fx["rules"], fx["ballots"],
                                         headers={"Idempotency-Key": f"job-{i}"}), ledger)
        assert r.status_code == 202, r.text
        with ledger.lock:
            ledger.jobs[r.json()["id"]] += 1
        time.sleep(2)

    threads = [client(f"voter-{w}", stop, ledger, cast(w)) for w in range(3)]
    threads += [client("batches", stop, ledger, batch), client("candidates", stop, ledger, candidates),
                client("jobs", stop, ledger, submit)]
    every = {}
    for name, group in (("election", elections), ("candidate", candidates_), ("voter", voters_),
                        ("jobs", jobs_)):
        for i, svc in enumerate(group):
            every[name if n == 1 else f"{name}-{i + 1}"] = svc
    chaos = Chaos(every, rabbit, mongo, SEED)
    t0 = time.monotonic()
    chaos.run(seconds)
    stop.set()
    for t in threads:
        t.join(GIVE_UP + 30)
    assert chaos.error is None, f"chaos driver failed (seed {SEED}): {chaos.error!r}"
    assert not ledger.failures, f"clients failed (seed {SEED}): {ledger.failures}"
    quiet = time.monotonic()

    # ---- convergence: everything running again; replicas and counts settle ----
    vdb = pymongo.MongoClient(mongo.uri)[f"voter_{ns}"]
    cdb = pymongo.MongoClient(mongo.uri)[f"candidate_{ns}"]
    edb = pymongo.MongoClient(mongo.uri)[f"election_{ns}"]
    jdb = pymongo.MongoClient(mongo.uri)[f"jobs_{ns}"]

    def source(coll):
        return {str(d["_id"]): (d["version"], bool(d["deleted"])) for d in coll.find()}

    def replica(coll):
        return {d["_id"]: (d["version"], bool(d.get("deleted", False))) for d in coll.find()}

    last_report = [time.monotonic()]

    def converged():
        if time.monotonic() - last_report[0] > 15:  # progress of a slow convergence
            last_report[0] = time.monotonic()
            have = replica(vdb.candidates)
            behind = sum(1 for k, v in source(cdb.candidates).items() if have.get(k) != v)
            with capsys.disabled():
                print(f"chaos: {time.monotonic() - quiet:.0f} s after the chaos, the voter's candidate "
                      f"replica differs on {behind}; queues:\n" + diagnose(rabbit, {}, run_dir / "logs"))
        return (source(cdb.candidates) == replica(vdb.candidates) and
                source(edb.elections) == replica(vdb.elections) == replica(cdb.elections) and
                edb.elections.count_documents({"_pending": True}) == 0 and
                cdb.candidates.count_documents({"_pending": True}) == 0)
    try:
        wait_until(converged, timeout=CONVERGE_S, interval=0.2, message="every replica equals its source")
    except AssertionError as exc:
        raise AssertionError(f"{exc} (seed {SEED})\n" + diagnose(rabbit, every, run_dir / "logs")) from None
    replicas_s = time.monotonic() - quiet

    def settled():
        if vdb.votes.count_documents({"tallied": False}) or vdb.chunks.count_documents({"state": "counting"}):
            return False
        done = [requests.get(f"{voter.url}/voter/votes/batch/{b}").json().get("status") for b in ledger.batches]
        return all(s == "completed" for s in done)
    try:
        wait_until(settled, timeout=CONVERGE_S, interval=0.5, message="every vote counted, every batch completed")
    except AssertionError as exc:
        raise AssertionError(f"{exc} (seed {SEED})\n" + diagnose(rabbit, every, run_dir / "logs")) from None
    wait_until(lambda: all(requests.get(f"{jobs.url}/jobs/{j}", params={"view": "status"},
                                        headers={"Accept": "application/json"}).json()["status"]
                           in ("succeeded", "failed") for j in ledger.jobs),
               timeout=CONVERGE_S, interval=0.5, message="every job final")

    # ---- the checks ----
    lost = doubled = 0
    live = Counter(str(v["_id"]) for v in vdb.votes.find({"deleted": False}))
    single = {i: n for i, n in live.items() if i in ledger.votes}
    lost += sum(1 for i in ledger.votes if live[i] == 0)
    doubled += sum(n - 1 for n in live.values() if n > 1)
    per_batch = Counter(v["chunk"].split(":")[0] for v in vdb.votes.find({"deleted": False, "chunk": {"$exists": True}}))
    for b, accepted in ledger.batches.items():
        lost += max(0, accepted - per_batch[b])
        doubled += max(0, per_batch[b] - accepted)
    unacknowledged = sum(live.values()) - len(single) - sum(per_batch[b] for b in ledger.batches)
    doubled += max(0, unacknowledged)
    recount = Counter(v["candidate"] for v in vdb.votes.find({"deleted": False, "election": MAIN}))
    # the sum of the replicas' tally shards (one shard per voter replica, votes.c)
    tallies = Counter()
    for t in vdb.tallies.find({"election": MAIN}):
        tallies[t["candidate"]] += t["votes"]
    tallies = {c: v for c, v in tallies.items() if v}
    results = {r["candidate"]: r["votes"] for r in requests.get(f"{vapi}/results/{MAIN}").json()["results"]}
    for v in voters_:  # every replica answers the same
        assert {r["candidate"]: r["votes"] for r in
                requests.get(f"{v.url}/voter/results/{MAIN}").json()["results"]} == results

    side = {str(d["_id"]): d for d in cdb.candidates.find({"election": SIDE})}
    side.update({str(d["_id"]): d for d in cdb.candidates.find({"deleted": True})})
    for cid, party in ledger.candidates.items():
        d = side.get(cid)
        if d is None or bool(d["deleted"]) != (party is None) or (party and d["politicalParty"] != party):
            lost += 1
    doubled += sum(1 for cid in side if cid not in ledger.candidates)

    for j, acks in ledger.jobs.items():
        doc = jdb.jobs.find_one({"_id": ObjectId(j)})
        results_of_j = jdb.job_data.count_documents({"job": j, "_id": {"$regex": r"\.result\."}})
        if doc is None or doc["status"] != "succeeded" or results_of_j == 0:
            lost += 1
        doubled += max(0, results_of_j - 1)
    doubled += max(0, jdb.jobs.count_documents({}) - len(ledger.jobs))

    dlqs = {}
    for q in ("voter.replicas.dlq", "candidate.elections.dlq", "voter.ingest.dlq", "jobs.work.dlq"):
        conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
        try:
            dlqs[q] = conn.channel().queue_declare(queue(q), passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            dlqs[q] = 0  # never declared: nothing was dead-lettered
        finally:
            conn.close()

    acknowledged = (len(ledger.votes) + sum(ledger.batches.values()) + ledger.candidate_writes
                    + len(ledger.jobs))
    with capsys.disabled():
        print(f"\nchaos: {time.monotonic() - t0:.0f} s of traffic under kills {dict(chaos.kills)}, "
              f"{ledger.retries} retries; votes {len(ledger.votes)}, batches {len(ledger.batches)}, "
              f"candidate writes {ledger.candidate_writes}, jobs {len(ledger.jobs)}")
        print(f"acknowledged {acknowledged}, lost {lost}, doubled {doubled}, "
              f"replicas converged in {replicas_s:.1f} s, seed {SEED}")
    assert lost == 0 and doubled == 0, f"seed {SEED}"
    assert all(n == 1 for n in ledger.vote_replies.values())  # one key, one vote id
    assert tallies == dict(recount) == results, f"seed {SEED}"
    assert not any(dlqs.values()), f"dead letters {dlqs} (seed {SEED})"
    assert vdb.chunks.count_documents({"state": {"$ne": "counted"}}) == 0
    assert len(ledger.votes) > 0 and ledger.batches and ledger.jobs and ledger.candidates
