"""The voter service's replicas and tallies under real event traffic: updates and deletes
propagate, duplicates and stale events are not re-applied, poison goes to the dead-letter
queue, a database outage is retried, and votes a crash left uncounted are recounted."""

from __future__ import annotations

import datetime
from urllib.parse import quote

import pymongo
import pytest
import requests
from bson import ObjectId

from events import candidate_data, cloud_event, election_data, publish, queue_depth
from harness import wait_until

E = "2020 Test Election"


def oid(n: int) -> str:
    return f"{n:024x}"


@pytest.fixture
def voter(service_factory, rabbit, amqp_exchange, ns):
    svc = service_factory("voter", env={"RECONCILE_S": "1", "REPLICA_RETRY_MS": "300"})
    svc.api = svc.url + "/voter"
    svc.db = f"voter_{ns}"
    publish(rabbit.url, amqp_exchange, [
        cloud_event("election.created", oid(1), 1, election_data(oid(1), E)),
        cloud_event("candidate.created", oid(10), 1, candidate_data(oid(10), "Ada", "Lovelace", E)),
        cloud_event("candidate.created", oid(11), 1, candidate_data(oid(11), "Alan", "Turing", E)),
    ])
    wait_until(lambda: len(candidates(svc)) == 2, message="replica has 2 candidates")
    return svc


def candidates(svc):
    return requests.get(f"{svc.api}/candidates").json()["_embedded"]["candidates"]


def metric(svc, name, labels):
    for line in requests.get(f"{svc.api}/metrics").text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return 0.0


def vote(svc, candidate, election=E):
    return requests.post(f"{svc.api}/votes", json={"candidate": candidate, "election": election})


def test_update_and_delete_propagate(voter, rabbit, amqp_exchange):
    publish(rabbit.url, amqp_exchange, [cloud_event(
        "candidate.updated", oid(10), 2, candidate_data(oid(10), "Ada", "Lovelace", E, party="Analytical"))])
    wait_until(lambda: any(c["politicalParty"] == "Analytical" for c in candidates(voter)))
    publish(rabbit.url, amqp_exchange, [cloud_event("candidate.deleted", oid(11), 2, {"id": oid(11), "version": 2})])
    wait_until(lambda: [c["fullName"] for c in candidates(voter)] == ["Ada Lovelace"])
    assert vote(voter, "Alan Turing").status_code == 422
    assert vote(voter, "Ada Lovelace").status_code == 201
    publish(rabbit.url, amqp_exchange, [cloud_event("election.deleted", oid(1), 2, {"id": oid(1), "version": 2})])
    wait_until(lambda: vote(voter, "Ada Lovelace").status_code == 422, message="deleted election refuses votes")


def test_a_deletion_applied_elsewhere_refuses_votes_within_the_known_ttl(voter, mongo):
    """The voter keeps "this candidate is live" for VOTER_KNOWN_TTL_MS (1 s by default). A
    deletion this process did not apply itself (another replica of the service did: here,
    written straight into its replica collection) refuses votes once that time is over;
    one it applied itself refuses them at once (test_update_and_delete_propagate)."""
    db = pymongo.MongoClient(mongo.uri)[voter.db]
    assert vote(voter, "Alan Turing").status_code == 201  # now known for up to 1 s
    db.candidates.update_one({"_id": oid(11)}, {"$set": {"deleted": True}})
    t0 = datetime.datetime.now()
    wait_until(lambda: vote(voter, "Alan Turing").status_code == 422, timeout=10, interval=0.1,
               message="a deleted candidate refuses votes")
    assert (datetime.datetime.now() - t0).total_seconds() < 3  # 1 s TTL, with room for load
    assert vote(voter, "Ada Lovelace").status_code == 201


def test_duplicates_and_stale_events_are_not_reapplied(voter, rabbit, amqp_exchange):
    v3 = cloud_event("candidate.updated", oid(10), 3, candidate_data(oid(10), "Ada", "Lovelace", E, party="v3"))
    v2 = cloud_event("candidate.updated", oid(10), 2, candidate_data(oid(10), "Ada", "Lovelace", E, party="v2"))
    publish(rabbit.url, amqp_exchange, [v3, v3, v2])  # duplicate, then out of order
    wait_until(lambda: metric(voter, "replica_events_total", 'collection="candidates",result="stale"') >= 1)
    assert metric(voter, "replica_events_total", 'collection="candidates",result="duplicate"') == 1
    ada = [c for c in candidates(voter) if c["firstName"] == "Ada"][0]
    assert ada["politicalParty"] == "v3" and ada["version"] == 3


def test_tombstone_stops_a_late_older_update(voter, rabbit, amqp_exchange):
    publish(rabbit.url, amqp_exchange, [
        cloud_event("candidate.deleted", oid(11), 5, {"id": oid(11), "version": 5}),
        cloud_event("candidate.updated", oid(11), 4, candidate_data(oid(11), "Alan", "Turing", E, party="late"))])
    wait_until(lambda: metric(voter, "replica_events_total", 'collection="candidates",result="stale"') >= 1)
    assert [c["fullName"] for c in candidates(voter)] == ["Ada Lovelace"]


def test_poison_messages_are_dead_lettered_at_once(voter, rabbit, amqp_exchange, queue):
    publish(rabbit.url, amqp_exchange, [], raw=b"{this is not json", routing_key="candidate.created")
    publish(rabbit.url, amqp_exchange, [cloud_event("candidate.created", oid(12), 1, {"no": "fullName"})])
    publish(rabbit.url, amqp_exchange, [cloud_event("candidate.created", "", 1, candidate_data("", "A", "B", E))])
    wait_until(lambda: queue_depth(rabbit.url, queue("voter.replicas.dlq")) == 3, timeout=10)
    # and the consumer keeps going
    publish(rabbit.url, amqp_exchange, [cloud_event("candidate.created", oid(13), 1,
                                                    candidate_data(oid(13), "Grace", "Hopper", E))])
    wait_until(lambda: len(candidates(voter)) == 3)
    assert metric(voter, "events_consumed_total", 'queue="voter.replicas",result="dead"') == 3


def test_database_outage_while_events_arrive_is_retried(voter, rabbit, amqp_exchange, mongo, queue):
    mongo.kill()
    try:
        publish(rabbit.url, amqp_exchange, [cloud_event("candidate.created", oid(20 + i), 1,
                candidate_data(oid(20 + i), f"C{i}", f"L{i}", E)) for i in range(5)])
        wait_until(lambda: metric(voter, "events_consumed_total", 'queue="voter.replicas",result="retry"') >= 1,
                   timeout=30, message="events go to the retry queue while the database is down")
    finally:
        mongo.start()
    wait_until(lambda: len(candidates(voter)) == 7, timeout=60, message="the replica converges")
    assert queue_depth(rabbit.url, queue("voter.replicas.dlq")) == 0


def test_votes_left_uncounted_by_a_crash_are_recounted(voter, mongo):
    for _ in range(3):
        assert vote(voter, "Ada Lovelace").status_code == 201
    # what a crash between writing a vote and counting it leaves behind
    db = pymongo.MongoClient(mongo.uri)[voter.db]
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=10)
    db.votes.insert_many([{"_id": ObjectId(), "candidate": "Alan Turing", "election": E,
                           "createdAt": old, "tallied": False, "deleted": False} for _ in range(2)])
    # and a delete interrupted right after its claim (votes.c: claim, mark, count): the
    # claim is the deletion, the vote not yet marked nor taken off the tally
    victim = db.votes.find_one({"candidate": "Ada Lovelace"})
    db.vote_deletions.insert_one({"_id": victim["_id"], "election": E, "candidate": "Ada Lovelace",
                                  "by": "0", "done": False, "createdAt": old})
    expected = {"results": [{"candidate": "Ada Lovelace", "votes": 2}, {"candidate": "Alan Turing", "votes": 2}]}
    wait_until(lambda: requests.get(f"{voter.api}/results/{quote(E)}").json() == expected, timeout=15,
               message="reconciliation recounts the election")
    # the recount marks the votes counted, finishes the deletion (the vote stays as a
    # tombstone: the shard arithmetic counts it) and closes the claim
    wait_until(lambda: db.votes.count_documents({"tallied": False}) == 0
               and db.vote_deletions.count_documents({"done": False}) == 0, timeout=10)
    assert db.votes.find_one({"_id": victim["_id"]})["deleted"] is True
    assert requests.get(f"{voter.api}/votes/{victim['_id']}").status_code == 404
    assert requests.get(f"{voter.api}/results/{quote(E)}").json() == expected


def test_a_delete_interrupted_by_the_old_design_still_counts_right(voter, mongo):
    # data written before deletions were claimed: a vote marked deleted (tallied: false),
    # no claim. It counts nowhere, as it did.
    for _ in range(3):
        assert vote(voter, "Ada Lovelace").status_code == 201
    db = pymongo.MongoClient(mongo.uri)[voter.db]
    # the service writes tallied flags behind the request: let them land before the old
    # data is simulated, or a late flag would overwrite the simulated one
    wait_until(lambda: db.votes.count_documents({"tallied": False}) == 0, timeout=10,
               message="the tallied flags are written")
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=10)
    victim = db.votes.find_one({"candidate": "Ada Lovelace"})
    db.votes.update_one({"_id": victim["_id"]}, {"$set": {"deleted": True, "tallied": False, "createdAt": old}})
    expected = {"results": [{"candidate": "Ada Lovelace", "votes": 2}]}
    wait_until(lambda: requests.get(f"{voter.api}/results/{quote(E)}").json() == expected, timeout=15,
               message="reconciliation recounts the election")
    wait_until(lambda: db.votes.count_documents({"tallied": False}) == 0, timeout=10)


def test_a_bulk_chunk_interrupted_between_insert_and_tally_is_recounted(voter, mongo):
    # a crash after a chunk's votes were written but before its tallies: the chunk's marker
    # still says "counting"
    db = pymongo.MongoClient(mongo.uri)[voter.db]
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=10)
    db.chunks.insert_one({"_id": "b1:0", "state": "counting", "elections": [E], "createdAt": old})
    db.votes.insert_many([{"_id": ObjectId(), "candidate": "Alan Turing", "election": E, "createdAt": old,
                           "tallied": True, "deleted": False, "chunk": "b1:0"} for _ in range(4)])
    expected = {"results": [{"candidate": "Alan Turing", "votes": 4}]}
    wait_until(lambda: requests.get(f"{voter.api}/results/{quote(E)}").json() == expected, timeout=15,
               message="reconciliation recounts the interrupted chunk's election")
    wait_until(lambda: db.chunks.find_one({"_id": "b1:0"})["state"] == "counted", timeout=10)


def test_a_redelivered_bulk_chunk_counts_nothing_twice(voter, rabbit, amqp_exchange):
    # the same chunk message twice (a redelivery after a lost ack): votes and tallies once
    import json as _json
    import pika
    chunk = {"batch": "0" * 24, "seq": 0, "votes": [
        {"id": f"{0xabc000 + i:024x}", "candidate": "Ada Lovelace", "election": E} for i in range(3)]}
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for _ in range(2):
            ch.basic_publish(amqp_exchange, "voter.ingest", _json.dumps(chunk).encode(),
                             pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()
    wait_until(lambda: metric(voter, "events_consumed_total", 'queue="voter.ingest",result="ack"') >= 2)
    assert requests.get(f"{voter.api}/results/{quote(E)}").json() == {
        "results": [{"candidate": "Ada Lovelace", "votes": 3}]}
    assert requests.get(f"{voter.api}/votes").json()["page"]["totalElements"] == 3
