"""Exactly once through crashes, one named point at a time.

Each test starts a service whose test build dies with _exit at one named point
(VOTER_CRASH_AT, shared/include/voter/crashpoint.h), lets a client run into it, restarts
the service without the variable, retries as a client would (same Idempotency-Key until
an answer comes), and then checks the stored data against the acknowledged history:
nothing missing, nothing doubled, tallies equal to a recount of the votes, replicas equal
to their source, one result per job."""

from __future__ import annotations

import time
from collections import Counter
from urllib.parse import quote

import pymongo
import pytest
import requests
from bson import ObjectId

from events import candidate_data, cloud_event, election_data, publish, queue_depth
from harness import admin_request, caller_headers, wait_until
from jobs_helpers import fixture, jobs_env, submit_json, wait_final

E = "2024 Crash Election"
CANDIDATES = [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper")]
NAMES = [f"{f} {l}" for f, l in CANDIDATES]


def oid(n: int) -> str:
    return f"{n:024x}"


def crashed(svc, timeout=30):
    """Waits until the service died at its crash point (exit 137), then clears the point."""
    wait_until(lambda: not svc.running, timeout=timeout, message=f"{svc.name} reaches its crash point")
    assert svc._proc.returncode == 137, svc.log_tail()
    assert any("crash point" in line for line in svc.log_lines()), svc.log_tail()
    svc.kill()  # reaps it
    svc.extra_env.pop("VOTER_CRASH_AT")


def restart(svc):
    svc.start()
    svc.wait_ready(60)


def retry(fn, timeout=60):
    """Calls fn until it returns a response that is not a connection error or a 5xx."""
    def attempt():
        try:
            r = fn()
        except requests.RequestException:
            return None
        return r if r.status_code < 500 else None
    return wait_until(attempt, timeout=timeout, interval=0.2, message="a retry is answered")


def start_voter(service_factory, rabbit, amqp_exchange, crash_at=None, **env):
    full = {"RECONCILE_S": "1", "REPLICA_RETRY_MS": "300", "BATCH_CHUNK": "20", **env}
    if crash_at:
        full["VOTER_CRASH_AT"] = crash_at
    svc = service_factory("voter", env=full)
    svc.api = svc.url + "/voter"
    events = [cloud_event("election.created", oid(1), 1, election_data(oid(1), E))]
    events += [cloud_event("candidate.created", oid(10 + i), 1, candidate_data(oid(10 + i), f, l, E))
               for i, (f, l) in enumerate(CANDIDATES)]
    if not crash_at or not crash_at.startswith("replica"):
        publish(rabbit.url, amqp_exchange, events)
        wait_until(lambda: requests.get(f"{svc.api}/candidates").json()["page"]["totalElements"] == 3,
                   message="the replica has the candidates")
    return svc, events


def voter_db(mongo, ns):
    return pymongo.MongoClient(mongo.uri)[f"voter_{ns}"]


def assert_votes_exactly(db, acknowledged: dict):
    """acknowledged: vote id -> candidate. Every acknowledged vote stored once, nothing
    else live, tallies equal to the recount, nothing left uncounted."""
    live = list(db.votes.find({"deleted": False}))
    ids = Counter(str(v["_id"]) for v in live)
    assert all(ids[i] == 1 for i in acknowledged), "an acknowledged vote is missing"
    assert sum(ids.values()) == len(acknowledged), f"doubled: {len(live)} live votes, {len(acknowledged)} acknowledged"
    for v in live:
        assert acknowledged[str(v["_id"])] == v["candidate"]
    recount = Counter((v["election"], v["candidate"]) for v in live)
    wait_until(lambda: db.votes.count_documents({"tallied": False}) == 0, timeout=30,
               message="every vote counted (reconciliation)")
    tallies = {(t["election"], t["candidate"]): t["votes"] for t in db.tallies.find() if t["votes"]}
    assert tallies == dict(recount)


@pytest.mark.parametrize("point", ["vote.inserted", "vote.tallied"])
def test_a_vote_cut_short_is_finished_by_its_retry_not_cast_again(
        point, service_factory, rabbit, amqp_exchange, mongo, ns):
    svc, _ = start_voter(service_factory, rabbit, amqp_exchange, crash_at=f"{point}:3")
    acknowledged = {}

    def cast(i):
        return requests.post(f"{svc.api}/votes", json={"candidate": NAMES[i % 3], "election": E},
                             headers={"Idempotency-Key": f"v-{i}"}, timeout=10)
    for i in range(2):
        r = cast(i)
        assert r.status_code == 201
        acknowledged[r.json()["id"]] = NAMES[i % 3]
    with pytest.raises(requests.ConnectionError):
        cast(2)  # the third vote reaches the point
    crashed(svc)
    restart(svc)
    for i in range(2, 5):
        r = retry(lambda: cast(i))
        assert r.status_code == 201, r.text
        assert (r.headers.get("Idempotent-Replayed") == "true") == (i == 2)
        acknowledged[r.json()["id"]] = NAMES[i % 3]
    assert_votes_exactly(voter_db(mongo, ns), acknowledged)
    totals = requests.get(f"{svc.api}/results/{quote(E)}/votes").json()
    assert totals == {"votes": 5}


@pytest.mark.parametrize("point", ["batch.recorded", "chunk.marked", "chunk.inserted", "chunk.tallied",
                                   "chunk.progress"])
def test_a_batch_cut_short_is_written_once(point, service_factory, rabbit, amqp_exchange, mongo, ns):
    """The worker (or the submission, for batch.recorded) dies mid-batch; the client retries
    the submission with its key until it gets an answer, and the batch completes once."""
    svc, _ = start_voter(service_factory, rabbit, amqp_exchange, crash_at=f"{point}:2")
    votes = [{"candidate": NAMES[i % 3], "election": E} for i in range(70)]  # 4 chunks of <= 20

    def submit(key):
        return requests.post(f"{svc.api}/votes/batch", json=votes, headers={"Idempotency-Key": key},
                             timeout=10)
    try:
        first = submit("warm-up")  # reaches the point once (":2" dies at the second)
        if point != "batch.recorded":
            assert first.status_code == 202
    except requests.ConnectionError:
        # a chunk point: the worker may reach it twice inside the warm-up batch before the
        # submission's answer is written (a loaded machine); the retries below cover both
        if point == "batch.recorded":
            raise
    try:
        r = submit("b-1")
        if point == "batch.recorded":
            pytest.fail(f"the submission should have died, got {r.status_code}")
    except requests.ConnectionError:
        pass
    crashed(svc)
    restart(svc)
    answers = [retry(lambda: submit(k)) for k in ("warm-up", "b-1")]
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    for a in answers:
        done = wait_until(lambda: requests.get(a.headers["Location"]).json()["status"] == "completed"
                          and requests.get(a.headers["Location"]).json(), timeout=60,
                          message="the batch completes")
        assert done["written"] == 70 and done["accepted"] == 70
    db = voter_db(mongo, ns)
    assert db.chunks.count_documents({"state": {"$ne": "counted"}}) == 0
    # every vote of both batches, once: the ids are derived from the batch and the line
    stored = list(db.votes.find({"deleted": False}))
    assert len(stored) == 140 and len({v["_id"] for v in stored}) == 140
    assert_votes_exactly(db, {str(v["_id"]): v["candidate"] for v in stored})
    assert requests.get(f"{svc.api}/results/{quote(E)}/votes").json() == {"votes": 140}


def test_two_chunks_of_one_election_insert_at_once_and_a_recount_waits_for_them(
        service_factory, rabbit, amqp_exchange, mongo, ns):
    """Two ingestion consumers (INGEST_WORKERS=2), each chunk paused 6 s just after its
    votes went in (VOTER_PAUSE_AT), still holding its election shared and its marker
    "counting": both chunks of one election are seen inserted and uncounted at once, which
    one lock per election (before) never allowed. The reconciliation (every second) finds
    those markers older than its period and recounts the election: it must wait for both
    chunks' tally writes (it takes the election exclusive), else it would count their
    votes and the chunks would then add them a second time."""
    svc, _ = start_voter(service_factory, rabbit, amqp_exchange, INGEST_WORKERS="2",
                         VOTER_PAUSE_AT="chunk.inserted:6000")
    db = voter_db(mongo, ns)
    votes = [{"candidate": NAMES[i % 3], "election": E} for i in range(40)]  # 2 chunks of 20
    r = requests.post(f"{svc.api}/votes/batch", json=votes, timeout=10)
    assert r.status_code == 202, r.text
    # the votes first, the markers after: a marker only goes from "counting" to "counted",
    # so both were "counting" when all 40 votes were already stored
    wait_until(lambda: db.votes.count_documents({}) == 40
               and db.chunks.count_documents({"state": "counting"}) == 2,
               timeout=10, interval=0.05, message="both chunks inserted, neither counted")
    # two reconciliation periods later, both chunks still paused: the recount found their
    # markers and waits for them
    time.sleep(2.5)
    waiting = db.chunks.count_documents({"state": "counting"}) == 2
    metrics = requests.get(f"{svc.api}/metrics").text
    assert 'votes_recounts_total{reason="periodic"}' not in metrics, \
        "a recount ran while two chunks of its election were between insert and tally"
    assert waiting, "the chunks were paused for less long than this test assumes"
    wait_until(lambda: requests.get(r.headers["Location"]).json()["status"] == "completed",
               timeout=60, message="the batch completes")
    wait_until(lambda: 'votes_recounts_total{reason="periodic"}' in requests.get(f"{svc.api}/metrics").text,
               timeout=30, message="the reconciliation recounted the election once they were done")
    stored = list(db.votes.find({"deleted": False}))
    assert len(stored) == 40
    assert_votes_exactly(db, {str(v["_id"]): v["candidate"] for v in stored})
    assert db.chunks.count_documents({"state": {"$ne": "counted"}}) == 0
    assert requests.get(f"{svc.api}/results/{quote(E)}/votes").json() == {"votes": 40}


@pytest.mark.parametrize("second", ["chunk.inserted", "chunk.recounting", "chunk.tallied"])
def test_a_chunk_cut_short_twice_is_counted_once(second, service_factory, rabbit, amqp_exchange,
                                                 mongo, ns):
    """A chunk's first delivery dies after its marker (chunk.marked, no vote written); the
    restart's reconciliation closes the marker ("counted", nothing to count) before the
    redelivery brings the votes; the redelivery dies too, at `second`, after inserting
    them. Its votes are stored uncounted (tallied: false), so the next start's
    reconciliation recounts them: stored "counted" behind a closed marker, they were in no
    tally and nothing pointed at them."""
    svc, _ = start_voter(service_factory, rabbit, amqp_exchange, crash_at="chunk.marked:1")
    votes = [{"candidate": NAMES[i % 3], "election": E} for i in range(20)]  # one chunk

    def submit():
        return requests.post(f"{svc.api}/votes/batch", json=votes,
                             headers={"Idempotency-Key": "twice"}, timeout=10)
    try:
        submit()
    except requests.ConnectionError:
        pass
    crashed(svc)
    svc.extra_env["VOTER_CRASH_AT"] = f"{second}:1"
    svc.start()  # the redelivery may reach the point before the service answers /ready
    crashed(svc)
    restart(svc)
    a = retry(submit)
    assert a.status_code == 202, a.text
    done = wait_until(lambda: requests.get(a.headers["Location"]).json()["status"] == "completed"
                      and requests.get(a.headers["Location"]).json(), timeout=60,
                      message="the batch completes")
    assert done["written"] == 20
    db = voter_db(mongo, ns)
    stored = list(db.votes.find({"deleted": False}))
    assert len(stored) == 20
    assert_votes_exactly(db, {str(v["_id"]): v["candidate"] for v in stored})
    assert db.chunks.count_documents({"state": {"$ne": "counted"}}) == 0
    assert requests.get(f"{svc.api}/results/{quote(E)}/votes").json() == {"votes": 20}


def test_a_replica_write_not_acked_is_redelivered_and_absorbed(
        service_factory, rabbit, amqp_exchange, mongo, ns, queue):
    svc, events = start_voter(service_factory, rabbit, amqp_exchange, crash_at="replica.applied:2")
    publish(rabbit.url, amqp_exchange, events)
    crashed(svc)
    restart(svc)
    wait_until(lambda: requests.get(f"{svc.api}/candidates").json()["page"]["totalElements"] == 3,
               message="the replica has every candidate")
    db = voter_db(mongo, ns)
    for e in events[1:]:
        doc = db.candidates.find_one({"_id": e["subject"]})
        assert doc["version"] == 1 and not doc["deleted"]
    assert db.elections.count_documents({}) == 1
    dup = wait_until(lambda: "result=\"duplicate\"" in requests.get(f"{svc.api}/metrics").text,
                     message="the redelivered event is counted as a duplicate")
    assert dup
    assert queue_depth(rabbit.url, queue("voter.replicas.dlq")) == 0


@pytest.mark.parametrize("point", ["outbox.before-publish", "outbox.published"])
def test_an_event_cut_short_is_published_after_the_restart_and_applied_once(
        point, service_factory, rabbit, amqp_exchange, mongo, ns, queue):
    voter, _ = start_voter(service_factory, rabbit, amqp_exchange)
    election = service_factory("election", env={"VOTER_CRASH_AT": point})
    body = {"title": "Outbox Election", "date": "2024-11-05", "electionType": "FEDERAL"}

    def create():
        return requests.post(f"{election.url}/election/elections", json=body,
                             headers={"Idempotency-Key": "e-1"}, timeout=10)
    try:
        first = create()
        first_id = first.json()["id"] if first.status_code == 201 else None
    except requests.ConnectionError:
        first_id = None  # died before its answer: the client retries
    crashed(election)
    restart(election)
    r = retry(create)
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    assert first_id in (None, eid)
    edb = pymongo.MongoClient(mongo.uri)[f"election_{ns}"]
    assert edb.elections.count_documents({}) == 1
    wait_until(lambda: edb.elections.find_one({"_id": ObjectId(eid)})["_pending"] is False,
               message="the outbox is emptied")
    vdb = voter_db(mongo, ns)
    wait_until(lambda: vdb.elections.find_one({"_id": eid}), message="the voter's replica has it")
    assert vdb.elections.count_documents({"title": "Outbox Election"}) == 1
    assert vdb.elections.find_one({"_id": eid})["version"] == 1
    assert queue_depth(rabbit.url, queue("voter.replicas.dlq")) == 0


def test_a_job_whose_worker_died_between_result_and_state_ends_with_one_result(
        service_factory, tmp_path, mongo, ns):
    env = jobs_env(tmp_path / "work", JOBS_LEASE_S=2, VOTER_CRASH_AT="job.result-written")
    svc = service_factory("jobs", env=env)
    fx = fixture("small-irv")
    key = {"Idempotency-Key": "job-1"}
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"], headers=key).json()["id"]
    crashed(svc)
    restart(svc)
    again = retry(lambda: submit_json(svc.url, fx["rules"], fx["ballots"], headers=key))
    assert again.status_code == 202 and again.json()["id"] == job_id
    r = wait_final(svc.url, job_id, timeout=60)
    assert r.status_code == 303, r.text
    assert requests.get(r.headers["Location"]).content == fx["expected"]
    db = pymongo.MongoClient(mongo.uri)[f"jobs_{ns}"]
    assert db.jobs.count_documents({}) == 1
    results = list(db.job_data.find({"job": job_id, "_id": {"$regex": r"\.result\."}}))
    assert [d["_id"] for d in results] == [db.jobs.find_one()["resultKey"]]
    assert db.jobs.find_one()["attempts"] == 2


def test_a_retry_finishes_a_vote_another_replica_left_uncounted(
        service_factory, rabbit, amqp_exchange, mongo, ns):
    """A vote written by an attempt that died before its tally (in a replica that never
    came back, so no start-up reconciliation ran here): the retry finds it, recounts, and
    answers with it. The document is written as that attempt would have: the id derived
    from (caller, key), the request's fingerprint, tallied false."""
    import datetime
    import hashlib
    import json
    svc, _ = start_voter(service_factory, rabbit, amqp_exchange, RECONCILE_S="3600")
    caller, key = "f" * 64, "left-behind"
    scoped = hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()
    vote_id = hashlib.sha256(f"vote\x1f{scoped}".encode()).hexdigest()[:24]
    request = {"candidate": NAMES[0], "election": E}
    fp = hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    db = voter_db(mongo, ns)
    db.votes.insert_one({"_id": ObjectId(vote_id), **request, "tallied": False, "deleted": False, "_idem": fp,
                         "createdAt": datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=30)})
    assert requests.get(f"{svc.api}/results/{quote(E)}/votes").json() == {"votes": 0}
    r = requests.post(f"{svc.api}/votes", json=request, headers={"Idempotency-Key": key, **caller_headers("POST", f"{svc.api}/votes", caller)})
    assert r.status_code == 201 and r.json()["id"] == vote_id and r.headers["Idempotent-Replayed"] == "true"
    assert requests.get(f"{svc.api}/results/{quote(E)}/votes").json() == {"votes": 1}
    assert db.votes.find_one({"_id": ObjectId(vote_id)})["tallied"] is True
    metrics = requests.get(f"{svc.api}/metrics").text
    assert 'idempotency_takeovers_total{kind="vote"} 1' in metrics
    assert 'votes_recounts_total{reason="retry"} 1' in metrics
    assert_votes_exactly(db, {vote_id: NAMES[0]})


def test_a_job_submission_cut_short_after_its_key_is_created_once_by_the_retry(
        service_factory, tmp_path, mongo, ns):
    env = jobs_env(tmp_path / "work", VOTER_CRASH_AT="job.key-recorded")
    svc = service_factory("jobs", env=env)
    fx = fixture("small-irv")
    key = {"Idempotency-Key": "job-2"}
    with pytest.raises(requests.ConnectionError):
        submit_json(svc.url, fx["rules"], fx["ballots"], headers=key)
    crashed(svc)
    restart(svc)
    db = pymongo.MongoClient(mongo.uri)[f"jobs_{ns}"]
    recorded = db.job_keys.find_one()["job"]
    assert db.jobs.count_documents({}) == 0
    again = retry(lambda: submit_json(svc.url, fx["rules"], fx["ballots"], headers=key))
    assert again.status_code == 202 and again.json()["id"] == recorded
    assert "Idempotent-Replayed" not in again.headers  # the job is new: this attempt created it
    r = wait_final(svc.url, recorded, timeout=60)
    assert r.status_code == 303 and requests.get(r.headers["Location"]).content == fx["expected"]
    third = submit_json(svc.url, fx["rules"], fx["ballots"], headers=key)
    assert third.json()["id"] == recorded and third.headers["Idempotent-Replayed"] == "true"
    assert db.jobs.count_documents({}) == 1
    assert 'idempotency_takeovers_total{kind="job"} 1' in requests.get(f"{svc.url}/jobs/metrics").text


def unlabelled_metric(svc, name):
    for line in requests.get(f"{svc.api}/metrics", timeout=5).text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.split()[-1])
    return 0.0


def listed_ids(svc):
    body = requests.get(f"{svc.api}/votes", params={"size": 1000}, timeout=10).json()
    return {v["id"] for v in body["_embedded"]["votes"]} if "_embedded" in body else set()


def test_a_vote_deleted_before_its_flag_is_written_loses_the_flag(service_factory, rabbit, amqp_exchange,
                                                                  mongo, ns):
    """FerretDB writes an update as the whole document it read: the tallied-flag write of a
    vote, if it read the vote before its deletion marked it and wrote after, put
    "deleted: false" back, and the deleted vote stayed listed and readable (seen once in CI,
    test_voter_api's paging test; the window is inside FerretDB's update, so no test here
    can hold it open). A deletion therefore withdraws the vote's flag first: queued, it is
    dropped (below, held 2 s in the queue by VOTER_FLAG_GATHER_MS); being written, the
    deletion waits for it. The deleted vote keeps "tallied: false" (at worst a needless
    recount); the kept one, queued beside it, is flagged."""
    svc, _ = start_voter(service_factory, rabbit, amqp_exchange, VOTER_FLAG_GATHER_MS="2000",
                         RECONCILE_S="3600")
    db = voter_db(mongo, ns)
    gone = requests.post(f"{svc.api}/votes", json={"candidate": NAMES[0], "election": E}, timeout=10).json()["id"]
    assert admin_request("DELETE", f"{svc.api}/votes/{gone}").status_code == 204
    keep = requests.post(f"{svc.api}/votes", json={"candidate": NAMES[1], "election": E}, timeout=10).json()["id"]
    wait_until(lambda: db.votes.find_one({"_id": ObjectId(keep)})["tallied"] is True, timeout=20,
               message="the flag writer has written the queued flags")
    doc = db.votes.find_one({"_id": ObjectId(gone)})
    assert doc["deleted"] is True and doc["tallied"] is False, doc
    assert listed_ids(svc) == {keep}
    assert requests.get(f"{svc.api}/votes/{gone}", timeout=5).status_code == 404
    results = requests.get(f"{svc.api}/results/{quote(E)}", timeout=5).json()["results"]
    assert {r["candidate"]: r["votes"] for r in results} == {NAMES[1]: 1}


def test_a_deletion_mark_overwritten_elsewhere_is_marked_again(service_factory, rabbit, amqp_exchange,
                                                               mongo, ns):
    """Another replica's flag write can still put "deleted: false" back on a vote this one
    deleted (nothing in this process knows of it). The reconciliation checks this instance's
    finished deletions once older than its period and marks such a vote again; the tallies
    never counted it (they count the deletion claim, not the mark)."""
    svc, _ = start_voter(service_factory, rabbit, amqp_exchange, RECONCILE_S="2")
    db = voter_db(mongo, ns)
    keep = requests.post(f"{svc.api}/votes", json={"candidate": NAMES[0], "election": E}, timeout=10).json()["id"]
    gone = requests.post(f"{svc.api}/votes", json={"candidate": NAMES[1], "election": E}, timeout=10).json()["id"]
    assert admin_request("DELETE", f"{svc.api}/votes/{gone}").status_code == 204
    # what a stale whole-document write of the other replica leaves: the vote as it was read
    res = db.votes.update_one({"_id": ObjectId(gone)}, {"$set": {"deleted": False}, "$unset": {"deletedBy": ""}})
    assert res.modified_count == 1
    assert requests.get(f"{svc.api}/votes/{gone}", timeout=5).status_code == 200  # the damage
    wait_until(lambda: requests.get(f"{svc.api}/votes/{gone}", timeout=5).status_code == 404, timeout=30,
               message="the reconciliation marks the deleted vote again")
    assert listed_ids(svc) == {keep}
    assert unlabelled_metric(svc, "votes_deletion_marks_repaired_total") == 1
    assert db.vote_deletions.find_one({"_id": ObjectId(gone)})["checked"] is True
    results = requests.get(f"{svc.api}/results/{quote(E)}", timeout=5).json()["results"]
    assert {r["candidate"]: r["votes"] for r in results} == {NAMES[0]: 1}
    assert admin_request("DELETE", f"{svc.api}/votes/{gone}").status_code == 404
