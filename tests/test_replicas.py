"""Several replicas of one service against one database (issue 15, "Several replicas").

Two processes of a service share its database. FerretDB evaluates an update's filter and
writes the resulting document in separate steps, and the in-process document lock
(shared/include/voter/doclock.h) does not reach the other process, so every test here
hammers ONE entity, election or key from both processes at once and checks what the
database holds afterwards:

  * votes: every acknowledged vote stored once, one vote per Idempotency-Key even when the
    key's two attempts run on the two replicas at the same moment, and the results (read
    from either replica) equal a recount of the stored votes - no lost or doubled count;
  * entities: concurrent writes of one election through two replicas never both win one
    version (no lost update), and conditional writes (If-Match) let exactly one through;
  * keyed creates: one entity per key across the replicas.

docs/design.md, "Several replicas: what each write rests on", says which guarantee each
operation uses."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
import requests

from harness import admin_request, caller_headers, wait_until
from test_voter_api import listing

ELECTION = "Replica Election"
NAMES = ["Ada Lovelace", "Alan Turing", "Grace Hopper"]


def candidate_body(name, election=ELECTION, party="Independent"):
    first, last = name.split(" ")
    return {"firstName": first, "lastName": last, "politicalParty": party, "election": election,
            "homeState": "NY", "politcalExperience": "none"}


@pytest.fixture
def two_voters(service_factory):
    """election, candidate and two voter replicas (VOTER_INSTANCE 1 and 2) sharing one
    database, with an election and three candidates replicated into both."""
    election = service_factory("election")
    candidate = service_factory("candidate", env={"ELECTION_URL": election.url})
    voters = [service_factory("voter", env={"VOTER_INSTANCE": str(i), "RECONCILE_S": "2",
                                            "CANDIDATE_URL": candidate.url})
              for i in (1, 2)]
    r = requests.post(f"{election.url}/election/elections",
                      json={"title": ELECTION, "date": "2024-11-05", "electionType": "FEDERAL"})
    assert r.status_code == 201, r.text
    for name in NAMES:
        wait_until(lambda: requests.post(f"{candidate.url}/candidate/candidates",
                                         json=candidate_body(name)).status_code == 201,
                   timeout=30, message="the candidate service knows the election")
    for v in voters:
        wait_until(lambda: requests.get(f"{v.url}/voter/candidates").json()["page"]["totalElements"] == 3,
                   timeout=60, message="both voter replicas have the candidates")
    return voters


def test_two_voters_count_every_vote_once(two_voters, mongo, ns):
    urls = [v.url + "/voter" for v in two_voters]
    acknowledged = Counter()  # vote id -> replies naming it
    per_key = {}
    lock = threading.Lock()

    def plain(i):
        r = requests.post(f"{urls[i % 2]}/votes",
                          json={"candidate": NAMES[i % 3], "election": ELECTION}, timeout=60)
        assert r.status_code == 201, r.text
        with lock:
            acknowledged[r.json()["id"]] += 1

    def keyed(k):
        # the same key on both replicas at once: one vote, both answered with it
        barrier = threading.Barrier(2)

        def attempt(i):
            barrier.wait()
            return requests.post(f"{urls[i]}/votes", timeout=60,
                                 json={"candidate": NAMES[k % 3], "election": ELECTION},
                                 headers={"Idempotency-Key": f"both-{k}"})
        with ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(attempt, (0, 1)))
        assert all(r.status_code == 201 for r in replies), [r.text for r in replies]
        ids = {r.json()["id"] for r in replies}
        assert len(ids) == 1, f"key both-{k} cast {ids}"
        with lock:
            per_key[k] = ids.pop()

    with ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(plain, i) for i in range(120)] + [pool.submit(keyed, k) for k in range(30)]
        for j in jobs:
            j.result()

    db = pymongo.MongoClient(mongo.uri)[f"voter_{ns}"]
    stored = Counter(str(d["_id"]) for d in db.votes.find({"deleted": False}))
    assert all(n == 1 for n in acknowledged.values())
    assert set(stored) == set(acknowledged) | set(per_key.values())
    recount = Counter(d["candidate"] for d in db.votes.find({"deleted": False, "election": ELECTION}))
    assert sum(recount.values()) == 150

    def results(url):
        return {r["candidate"]: r["votes"] for r in requests.get(f"{url}/results/{ELECTION}").json()["results"]}
    # no lost and no doubled increment, read through either replica
    wait_until(lambda: db.votes.count_documents({"tallied": False}) == 0, timeout=30,
               message="every vote counted")
    assert results(urls[0]) == results(urls[1]) == dict(recount)


def test_two_voters_delete_one_vote_once(two_voters, mongo, ns):
    from harness import admin_request as admin

    urls = [v.url + "/voter" for v in two_voters]
    ids = []
    for i in range(12):
        r = requests.post(f"{urls[i % 2]}/votes", json={"candidate": NAMES[0], "election": ELECTION})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    def delete_on_both(vid):
        barrier = threading.Barrier(2)

        def attempt(i):
            barrier.wait()
            return admin("DELETE", f"{urls[i]}/votes/{vid}").status_code
        with ThreadPoolExecutor(2) as pool:
            return sorted(pool.map(attempt, (0, 1)))

    for vid in ids[:6]:
        assert delete_on_both(vid) == [204, 404]
    results = requests.get(f"{urls[0]}/results/{ELECTION}").json()["results"]
    assert results == [{"candidate": NAMES[0], "votes": 6}]
    assert requests.get(f"{urls[1]}/results/{ELECTION}").json()["results"] == results


@pytest.fixture
def two_elections(service_factory):
    return [service_factory("election") for _ in range(2)]


def test_two_election_replicas_never_lose_an_update(two_elections, mongo, ns):
    urls = [e.url + "/election/elections" for e in two_elections]
    r = requests.post(urls[0], json={"title": "Contended", "date": "2024-11-05", "electionType": "FEDERAL"})
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    versions = []
    lock = threading.Lock()

    def put(i):
        body = {"title": "Contended", "date": f"2024-11-{1 + i % 28:02d}", "electionType": "FEDERAL"}
        r = requests.put(f"{urls[i % 2]}/{eid}", json=body, timeout=60)
        if r.status_code == 200:
            with lock:
                versions.append(r.json()["version"])
        else:
            assert r.status_code == 503, r.text  # contention may give up; never a lost write

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(put, range(60)))
    # every acknowledged write got a version of its own, and the document holds the last
    assert len(versions) == len(set(versions)), sorted(versions)
    assert versions, "no write succeeded"
    doc = pymongo.MongoClient(mongo.uri)[f"election_{ns}"].elections.find_one()
    assert doc["version"] == 1 + len(versions) == max(versions)

    # If-Match on both replicas at once: exactly one wins
    for _ in range(10):
        current = requests.get(f"{urls[0]}/{eid}").json()["version"]
        barrier = threading.Barrier(2)

        def conditional(i):
            barrier.wait()
            body = {"title": "Contended", "date": f"2025-01-0{1 + i}", "electionType": "FEDERAL"}
            return requests.put(f"{urls[i]}/{eid}", json=body, headers={"If-Match": f'"{current}"'},
                                timeout=60).status_code
        with ThreadPoolExecutor(2) as pool:
            assert sorted(pool.map(conditional, (0, 1))) == [200, 412]


def test_two_election_replicas_create_one_per_key(two_elections, mongo, ns):
    urls = [e.url + "/election/elections" for e in two_elections]

    def create(k):
        barrier = threading.Barrier(2)

        def attempt(i):
            barrier.wait()
            return requests.post(urls[i], json={"title": f"Keyed {k}", "date": "2024-11-05",
                                                "electionType": "FEDERAL"},
                                 headers={"Idempotency-Key": f"e-{k}"}, timeout=60)
        with ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(attempt, (0, 1)))
        assert all(r.status_code == 201 for r in replies), [r.text for r in replies]
        assert len({r.json()["id"] for r in replies}) == 1
    for k in range(10):
        create(k)
    assert pymongo.MongoClient(mongo.uri)[f"election_{ns}"].elections.count_documents({}) == 10


def test_a_revision_claimed_by_a_writer_that_died_is_rolled_forward(two_elections, mongo, ns):
    import datetime

    import bson
    from bson import ObjectId

    urls = [e.url + "/election/elections" for e in two_elections]
    r = requests.post(urls[0], json={"title": "Orphaned", "date": "2024-11-05", "electionType": "FEDERAL"})
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    db = pymongo.MongoClient(mongo.uri)[f"election_{ns}"]
    # the relay's removal of the published event is a revision too: let it finish
    wait_until(lambda: not db.elections.find_one({"_id": ObjectId(eid)})["_pending"], timeout=30)
    rev = db.elections.find_one({"_id": ObjectId(eid)}).get("_rev", 0)
    # what a writer that died between its claim and its write leaves behind (revclaim.h)
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=30)
    update = {"$set": {"description": "written by the dead writer", "version": 2}}
    db.elections_revs.insert_one({"_id": f"{eid}:{rev + 1}", "nonce": "f" * 24,
                                  "update": bson.Binary(bson.encode(update)), "createdAt": old})
    r = requests.put(f"{urls[1]}/{eid}", json={"title": "Orphaned", "date": "2024-11-06",
                                               "electionType": "FEDERAL"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 3  # after the rolled-forward revision
    doc = db.elections.find_one({"_id": ObjectId(eid)})
    assert doc["_rev"] >= rev + 2 and doc["version"] == 3


def test_two_voter_replicas_behind_the_gateway(two_voters, service_factory, mongo, ns, tmp_path):
    import json

    import harness

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"replicas-test-key": "paid"}))
    path = harness.replica_gateway_config({"voter": [v.url for v in two_voters]},
                                          tmp_path / "gateway.json", keys)
    gateway = service_factory("gateway", env={"GATEWAY_CONFIG": str(path), "GATEWAY_KEYS_FILE": str(keys)})
    headers = {"X-API-Key": "replicas-test-key"}
    before = [sum('"POST"' in line and "/voter/votes" in line for line in v.log_lines()) for v in two_voters]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda i: requests.post(
            f"{gateway.url}/voter/votes", json={"candidate": NAMES[i % 3], "election": ELECTION},
            headers=headers, timeout=60), range(60)))
    assert all(r.status_code == 201 for r in replies), [r.text for r in replies if r.status_code != 201]
    served = [sum('"POST"' in line and "/voter/votes" in line for line in v.log_lines()) - b
              for v, b in zip(two_voters, before)]
    assert all(n > 0 for n in served) and sum(served) == 60, served  # both replicas took votes
    results = requests.get(f"{gateway.url}/voter/results/{ELECTION}", headers=headers).json()["results"]
    assert sorted(r["votes"] for r in results) == [20, 20, 20]
    db = pymongo.MongoClient(mongo.uri)[f"voter_{ns}"]
    assert {d.get("shard") for d in db.votes.find()} == {"1", "2"}


def test_the_listing_pages_through_both_replicas_votes_once_each(two_voters, mongo, ns):
    """Both replicas hand out listing positions from claims of their own (issue 15: pages
    found by equality reads): 1,100 bulk votes through one (two claims), single and keyed
    votes through both at once, some deleted. Paged through either replica, in any page
    size, the listing is every live vote exactly once, in (bucket, id) order, and the first
    and last pages agree with it."""
    a, b = (v.url + "/voter" for v in two_voters)
    r = requests.post(f"{a}/votes/batch", json=[{"candidate": NAMES[0], "election": ELECTION}] * 1100)
    assert r.status_code == 202, r.text
    wait_until(lambda: requests.get(r.headers["Location"]).json()["status"] == "completed", timeout=60,
               message="the batch is written")

    def cast(i):
        api = (a, b)[i % 2]
        headers = ({"Idempotency-Key": f"listing-{i}", **caller_headers("POST", f"{api}/votes", "c" * 64)}
                   if i % 3 == 0 else {})
        got = requests.post(f"{api}/votes", json={"candidate": NAMES[i % 3], "election": ELECTION},
                            headers=headers)
        assert got.status_code == 201, got.text
        return got.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        singles = list(pool.map(cast, range(60)))
    for vid in singles[::7]:
        assert admin_request("DELETE", f"{b}/votes/{vid}").status_code == 204
    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=5000)
    try:
        live = sorted(client[f"voter_{ns}"].votes.find({"deleted": False}), key=lambda d: (d["pg"], d["_id"]))
    finally:
        client.close()
    expected = [str(d["_id"]) for d in live]
    assert len(expected) == 1100 + 60 - len(singles[::7])
    wait_until(lambda: all(requests.get(f"{api}/votes").json()["page"]["totalElements"] == len(expected)
                           for api in (a, b)), message="both replicas count every live vote")
    for size in (100, 333, 1000):
        assert listing(a, size, via=[a, b]) == expected
    last = requests.get(f"{b}/votes", params={"page": (len(expected) - 1) // 20, "size": 20}).json()
    assert [v["id"] for v in last["_embedded"]["votes"]] == expected[(len(expected) - 1) // 20 * 20:]
