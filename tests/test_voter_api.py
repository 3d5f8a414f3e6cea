"""Voter service over real HTTP with real RabbitMQ and FerretDB. Its replicas are fed by
publishing candidate/election events to the exchange, exactly as the other services do."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pymongo
import pytest
import requests
from bson import ObjectId

from events import candidate_data, cloud_event, election_data, publish
from harness import admin_request as admin, caller_headers, wait_until

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "votes-35.json").read_text())
E2016 = "2016 Presidential Election"
CANDIDATES_2016 = [("Chris", "Keniston"), ("Darrell", "Castle"), ("Donald", "Trump"),
                   ("Gary", "Johnson"), ("Hillary", "Clinton"), ("Jill", "Stein")]
ODD = "Election, with. dots and, commas"
JSON = {"Content-Type": "application/json"}


def oid(n: int) -> str:
    return f"{n:024x}"


def start_voter(service_factory, rabbit, amqp_exchange, env):
    svc = service_factory("voter", env=env)
    events = [cloud_event("election.created", oid(1), 1, election_data(oid(1), E2016)),
              cloud_event("election.created", oid(2), 1, election_data(oid(2), ODD))]
    for i, (first, last) in enumerate(CANDIDATES_2016):
        cid = oid(100 + i)
        events.append(cloud_event("candidate.created", cid, 1, candidate_data(cid, first, last, E2016)))
    for i, (first, last) in enumerate([("Zed", "Alpha"), ("Amy", "Zulu")]):
        cid = oid(200 + i)
        events.append(cloud_event("candidate.created", cid, 1, candidate_data(cid, first, last, ODD)))
    publish(rabbit.url, amqp_exchange, events)
    wait_until(lambda: requests.get(f"{svc.url}/voter/candidates").json()["page"]["totalElements"] == 8,
               timeout=15, message="the candidate replica has the 8 candidates")
    svc.api = svc.url + "/voter"
    return svc


@pytest.fixture
def voter(service_factory, rabbit, amqp_exchange):
    return start_voter(service_factory, rabbit, amqp_exchange, {"RECONCILE_S": "2"})


def vote(api, candidate, election=E2016, **kw):
    return requests.post(f"{api}/votes", json={"candidate": candidate, "election": election}, **kw)


def assert_problem(r, status, field=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    if field:
        assert any(e["field"] == field for e in r.json()["errors"]), r.json()


def total_votes(api):
    return requests.get(f"{api}/votes").json()["page"]["totalElements"]


def test_the_35_vote_fixture(voter):
    api = voter.api
    for v in FIXTURE["votes"]:
        r = requests.post(f"{api}/votes", json=v)
        assert r.status_code == 201, r.text
    enc = quote(E2016)
    results = requests.get(f"{api}/results/{enc}").json()["results"]
    expect = FIXTURE["expect"]
    assert results[0] == expect["results_head"]
    assert requests.get(f"{api}/results/{enc}/votes").json() == {"votes": expect["total"]}
    assert requests.get(f"{api}/winners/{enc}").json() == {"results": expect["winners"]}
    assert requests.get(f"{api}/winners/{enc}/votes").json() == {"votes": expect["winners_votes"]}
    counts = Counter(v["candidate"] for v in FIXTURE["votes"])
    assert {r["candidate"]: r["votes"] for r in results} == dict(counts)
    votes = [r["votes"] for r in results]
    assert votes == sorted(votes, reverse=True)


def test_vote_crud_and_hal(voter):
    api = voter.api
    r = vote(api, "Jill Stein")
    assert r.status_code == 201
    item = r.json()
    assert item["candidate"] == "Jill Stein" and item["election"] == E2016 and len(item["id"]) == 24
    assert r.headers["Location"].endswith(f"/voter/votes/{item['id']}")
    assert requests.get(f"{api}/votes/{item['id']}").json()["candidate"] == "Jill Stein"
    listing = requests.get(f"{api}/votes").json()
    assert listing["page"]["totalElements"] == 1 and listing["_embedded"]["votes"][0]["_links"]["vote"]
    assert admin("DELETE", f"{api}/votes/{item['id']}").status_code == 204
    assert_problem(requests.get(f"{api}/votes/{item['id']}"), 404)
    assert_problem(admin("DELETE", f"{api}/votes/{item['id']}"), 404)
    assert_problem(requests.get(f"{api}/votes/nonsense"), 404)
    assert requests.get(f"{api}/results/{quote(E2016)}").json() == {"results": []}
    assert_problem(requests.put(f"{api}/votes/{item['id']}", json={}), 405)


def test_pages_of_votes_in_id_order_first_middle_last_and_past_the_end(voter):
    """The listing's total comes from the tallies and pages in the second half are read
    backwards from the end: the pages must still be the list cut in sizes. Unkeyed votes of
    one process are listed in id order (listing positions follow insertion, and a bucket is
    read in id order); sorted by a field, ties are broken by id."""
    api = voter.api
    ids = sorted(vote(api, name).json()["id"] for name in ["Jill Stein", "Gary Johnson"] * 4 + ["Donald Trump"])
    assert admin("DELETE", f"{api}/votes/{ids.pop(3)}").status_code == 204  # 8 live
    seen = []
    for page in range(4):
        body = requests.get(f"{api}/votes", params={"page": page, "size": 3}).json()
        assert body["page"] == {"size": 3, "totalElements": 8, "totalPages": 3, "number": page}
        seen += [v["id"] for v in body["_embedded"]["votes"]]
        links = body["_links"]
        assert links["first"]["href"].endswith("page=0&size=3") and links["last"]["href"].endswith("page=2&size=3")
        assert ("next" in links) == (page < 2) and ("prev" in links) == (page > 0)
    assert seen == ids  # page 3 is past the end: empty
    everyone = []  # sorted by candidate, descending; ties by id, ascending, on every page
    for page in range(3):
        body = requests.get(f"{api}/votes", params={"page": page, "size": 3, "sort": "candidate,desc"}).json()
        everyone += [(v["candidate"], v["id"]) for v in body["_embedded"]["votes"]]
    assert everyone == sorted(sorted(everyone, key=lambda v: v[1]), key=lambda v: v[0], reverse=True)
    assert sorted(v[1] for v in everyone) == ids


def test_deleting_a_vote_updates_the_tally(voter):
    api = voter.api
    ids = [vote(api, "Gary Johnson").json()["id"] for _ in range(3)]
    admin("DELETE", f"{api}/votes/{ids[0]}")
    assert requests.get(f"{api}/results/{quote(E2016)}").json() == {
        "results": [{"candidate": "Gary Johnson", "votes": 2}]}


def test_unknown_candidate_or_election_is_422_and_not_written(voter):
    api = voter.api
    assert_problem(vote(api, "Nobody Atall"), 422, "candidate")
    assert_problem(vote(api, "Jill Stein", election="No Such Election"), 422, "election")
    assert_problem(vote(api, "Zed Alpha"), 422, "candidate")  # known, but in another election
    assert total_votes(api) == 0


def test_idempotency_key_counts_once_and_replays_the_first_response(voter):
    api = voter.api
    first = vote(api, "Donald Trump", headers={"Idempotency-Key": "k-1"})
    again = vote(api, "Donald Trump", headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert_problem(vote(api, "Jill Stein", headers={"Idempotency-Key": "k-1"}), 422)
    assert total_votes(api) == 1
    # a failed request does not burn its key
    assert_problem(vote(api, "Nobody", headers={"Idempotency-Key": "k-2"}), 422)
    assert vote(api, "Jill Stein", headers={"Idempotency-Key": "k-2"}).status_code == 201


def test_idempotency_keys_are_per_caller(voter):
    api = voter.api
    alice = {"Idempotency-Key": "same", **caller_headers("POST", f"{api}/votes", "a" * 64)}
    bob = {"Idempotency-Key": "same", **caller_headers("POST", f"{api}/votes", "b" * 64)}
    first = vote(api, "Jill Stein", headers=alice)
    other = vote(api, "Gary Johnson", headers=bob)  # another caller: not a reuse, not a replay
    anonymous = vote(api, "Gary Johnson", headers={"Idempotency-Key": "same"})
    assert first.status_code == other.status_code == anonymous.status_code == 201
    assert "Idempotent-Replayed" not in other.headers and "Idempotent-Replayed" not in anonymous.headers
    assert len({first.json()["id"], other.json()["id"], anonymous.json()["id"]}) == 3
    again = vote(api, "Jill Stein", headers=alice)
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert total_votes(api) == 3
    # a bare X-Consumer-ID (no gateway proof) names nobody: anonymous, whose key "same" is
    # taken by the Gary Johnson vote above
    bare = vote(api, "Jill Stein", headers={"Idempotency-Key": "same", "X-Consumer-ID": "a" * 64})
    assert_problem(bare, 422)
    assert total_votes(api) == 3


def test_a_retry_is_the_same_request_however_it_is_spelled(voter):
    api = voter.api
    key = {"Idempotency-Key": "spelling", **JSON}
    a = requests.post(f"{api}/votes", data='{"candidate":"Jill Stein","election":"%s"}' % E2016, headers=key)
    b = requests.post(f"{api}/votes", data='{ "election": "%s",\n "candidate": "Jill Stein" }' % E2016,
                      headers=key)
    assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
    assert b.headers["Location"] == a.headers["Location"]
    assert_problem(vote(api, "Jill Stein", headers={"Idempotency-Key": ""}), 400)
    assert_problem(vote(api, "Jill Stein", headers={"Idempotency-Key": "k" * 256}), 400)
    assert total_votes(api) == 1


def test_a_deleted_keyed_vote_is_not_cast_again_by_a_late_retry(voter):
    api = voter.api
    key = {"Idempotency-Key": "late"}
    first = vote(api, "Jill Stein", headers=key)
    assert admin("DELETE", f"{api}/votes/{first.json()['id']}").status_code == 204
    again = vote(api, "Jill Stein", headers=key)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert total_votes(api) == 0
    assert requests.get(f"{api}/results/{quote(E2016)}").json() == {"results": []}


def test_winners_report_every_tie_from_one_read(voter):
    api = voter.api
    for name in ["Jill Stein", "Jill Stein", "Gary Johnson", "Gary Johnson", "Darrell Castle"]:
        vote(api, name)
    enc = quote(E2016)
    assert requests.get(f"{api}/winners/{enc}").json() == {"results": [
        {"candidate": "Gary Johnson", "votes": 2}, {"candidate": "Jill Stein", "votes": 2}]}
    assert requests.get(f"{api}/winners/{enc}/votes").json() == {"votes": 2}


def test_no_votes_means_empty_results_and_zero(voter):
    api = voter.api
    enc = quote("Nothing here")
    assert requests.get(f"{api}/results/{enc}").json() == {"results": []}
    assert requests.get(f"{api}/results/{enc}/votes").json() == {"votes": 0}
    assert requests.get(f"{api}/winners/{enc}").json() == {"results": []}
    assert requests.get(f"{api}/winners/{enc}/votes").json() == {"votes": 0}


def test_titles_with_commas_and_dots_are_not_truncated(voter):
    api = voter.api
    assert vote(api, "Amy Zulu", election=ODD).status_code == 201
    enc = quote(ODD, safe="")
    assert requests.get(f"{api}/results/{enc}").json() == {"results": [{"candidate": "Amy Zulu", "votes": 1}]}
    body = requests.get(f"{api}/candidates/{enc}").json()
    assert [c["fullName"] for c in body["candidates"]] == ["Zed Alpha", "Amy Zulu"]  # by lastName


def test_candidates_of_an_election_sorted_by_last_name(voter):
    body = requests.get(f"{voter.api}/candidates/{quote(E2016)}").json()
    names = [c["fullName"] for c in body["candidates"]]
    assert names == ["Darrell Castle", "Hillary Clinton", "Gary Johnson", "Chris Keniston",
                     "Jill Stein", "Donald Trump"]
    assert set(body["candidates"][0]) == {"fullName", "politicalParty", "election"}


def test_candidate_replica_is_hal_and_searchable(voter):
    api = voter.api
    body = requests.get(f"{api}/candidates", params={"size": 3, "sort": "lastName,desc"}).json()
    assert body["page"]["totalElements"] == 8 and body["page"]["totalPages"] == 3
    assert [c["lastName"] for c in body["_embedded"]["candidates"]] == ["Zulu", "Trump", "Stein"]
    found = requests.get(f"{api}/candidates/search/findByElectionContains", params={"election": "dots"}).json()
    assert {c["fullName"] for c in found["_embedded"]["candidates"]} == {"Zed Alpha", "Amy Zulu"}
    assert_problem(requests.get(f"{api}/candidates/search/findByElectionContains"), 400)
    assert_problem(requests.post(f"{api}/candidates", json={}), 405)
    elections = requests.get(f"{api}/elections").json()
    assert elections["page"]["totalElements"] == 2


def test_simulation_adds_3_to_25_votes_per_candidate(voter):
    api = voter.api
    enc = quote(E2016)
    r = admin("POST", f"{api}/simulation/{enc}")
    assert r.status_code == 200
    assert r.json() == {"message": "Simulation data created using eventual consistency!"}
    results = requests.get(f"{api}/results/{enc}").json()["results"]
    assert len(results) == 6 and all(3 <= x["votes"] <= 25 for x in results)
    total = sum(x["votes"] for x in results)
    assert requests.get(f"{api}/results/{enc}/votes").json() == {"votes": total}
    assert total_votes(api) == total
    # the original's GET alias
    assert admin("GET", f"{api}/simulation/{enc}").status_code == 200
    assert requests.get(f"{api}/results/{enc}/votes").json()["votes"] > total
    # like the original: an election without known candidates gets the message and no votes
    before = total_votes(api)
    assert admin("POST", f"{api}/simulation/{quote('Unknown')}").status_code == 200
    assert total_votes(api) == before


def test_drop_votes(voter):
    api = voter.api
    admin("POST", f"{api}/simulation/{quote(E2016)}")
    assert admin("POST", f"{api}/drop/votes").status_code == 204
    assert total_votes(api) == 0
    assert requests.get(f"{api}/results/{quote(E2016)}").json() == {"results": []}


def listing(api, size, via=None):
    """Every page of the default listing, in order, read through the given APIs in turn."""
    via = via or [api]
    first = requests.get(f"{api}/votes", params={"size": size}).json()
    pages = first["page"]["totalPages"]
    ids = []
    for page in range(pages + 1):  # one past the end: empty
        body = requests.get(f"{via[page % len(via)]}/votes", params={"page": page, "size": size}).json()
        ids += [v["id"] for v in body["_embedded"]["votes"]]
        assert page < pages or not body["_embedded"]["votes"]
    return ids


def test_votes_stored_before_listing_positions_are_moved_once_and_listed_first(
        service_factory, rabbit, amqp_exchange, mongo, ns):
    """Votes written by a version without listing positions (no "pg") are moved into the
    first bucket at start-up, once (a marker records it), counted by the start-up
    reconciliation, and listed before the votes cast since."""
    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=5000)
    try:
        db = client[f"voter_{ns}"]
        old = [ObjectId() for _ in range(3)]
        db.votes.insert_many([{"_id": o, "candidate": "Jill Stein", "election": E2016, "deleted": False,
                               "tallied": False, "createdAt": datetime(2024, 1, 1, tzinfo=timezone.utc)}
                              for o in old])
        api = start_voter(service_factory, rabbit, amqp_exchange, {"RECONCILE_S": "2"}).api
        new = [vote(api, "Gary Johnson").json()["id"] for _ in range(3)]
        assert listing(api, 2) == sorted(str(o) for o in old) + new
        assert total_votes(api) == 6
        assert {d["pg"] for d in db.votes.find({"_id": {"$in": old}})} == {-1}
        assert all(d["pg"] >= 0 for d in db.votes.find({"_id": {"$in": [ObjectId(i) for i in new]}}))
        assert db.vote_tips.find_one({"_id": "~legacy"})["moved"] == 3
    finally:
        client.close()


def test_the_listing_after_a_drop_starts_at_its_floor(voter, mongo, ns):
    """A drop records the first bucket of the lowest claim in use: the votes cast after it
    are listed from there (the claim the dropped votes filled is not walked), first page
    and last page alike."""
    api = voter.api
    r = requests.post(f"{api}/votes/batch", json=[{"candidate": "Jill Stein", "election": E2016}] * 1100)
    assert r.status_code == 202
    wait_batch(api, r.headers["Location"])
    vote(api, "Jill Stein")  # its position is the first of a hand-out in claim 1
    assert total_votes(api) == 1101
    assert admin("POST", f"{api}/drop/votes").status_code == 204
    fresh = [vote(api, "Gary Johnson").json()["id"] for _ in range(5)]
    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=5000)
    try:
        db = client[f"voter_{ns}"]
        floor = db.vote_tips.find_one({"_id": "~floor"})["floor"]
        assert floor == 32  # the votes took claims 0 and 1 (1,024 positions each): 1 starts at bucket 32
        assert all(d["pg"] >= floor for d in db.votes.find())
    finally:
        client.close()
    assert listing(api, 2) == fresh
    body = requests.get(f"{api}/votes", params={"page": 2, "size": 2}).json()
    assert [v["id"] for v in body["_embedded"]["votes"]] == fresh[4:]


def test_a_restarted_voter_goes_on_in_its_claim(voter, mongo, ns):
    """A restart resumes the claim of the instance's tip from the next bucket: no new claim,
    so no half-empty claim for every walk to read; the listing is in casting order."""
    api = voter.api
    before = [vote(api, "Jill Stein").json()["id"] for _ in range(3)]
    voter.restart()
    after = [vote(api, "Jill Stein").json()["id"] for _ in range(3)]
    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=5000)
    try:
        db = client[f"voter_{ns}"]
        assert [db.votes.find_one({"_id": ObjectId(i)})["pg"] for i in before + after] == [0] * 3 + [1] * 3
        assert db.vote_claims.count_documents({}) == 1
        assert db.vote_tips.find_one({"_id": "0"})["bucket"] == 1
    finally:
        client.close()
    assert listing(api, 4) == before + after


def test_drop_candidates_clears_the_replica(voter):
    # no candidate service runs here: the replica is cleared and the failed replay reported
    r = admin("POST", f"{voter.api}/drop/candidates")
    assert r.status_code == 204 and "Warning" in r.headers
    assert requests.get(f"{voter.api}/candidates").json()["page"]["totalElements"] == 0
    assert_problem(vote(voter.api, "Jill Stein"), 422, "candidate")


BAD = [
    ("malformed", b'{"candidate": ', 400, None),
    ("not an object", b'["Jill Stein"]', 422, None),
    ("missing candidate", json.dumps({"election": E2016}), 422, "candidate"),
    ("missing election", json.dumps({"candidate": "Jill Stein"}), 422, "election"),
    ("wrong type", json.dumps({"candidate": 7, "election": E2016}), 422, "candidate"),
    ("unknown field", json.dumps({"candidate": "Jill Stein", "election": E2016, "weight": 100}), 422, "weight"),
    ("dollar key", json.dumps({"candidate": {"$ne": ""}, "election": E2016}), 422, "candidate.$ne"),
    ("dotted key", json.dumps({"candidate": "Jill Stein", "election": E2016, "a.b": 1}), 422, "a.b"),
]


@pytest.mark.parametrize("name,body,status,field", BAD, ids=[b[0] for b in BAD])
def test_bad_vote_bodies_are_rejected_and_nothing_written(voter, name, body, status, field):
    assert_problem(requests.post(f"{voter.api}/votes", data=body, headers=JSON), status, field)
    assert total_votes(voter.api) == 0


def test_wrong_content_type_and_huge_body(voter):
    api = voter.api
    assert_problem(requests.post(f"{api}/votes", data=json.dumps({"candidate": "Jill Stein", "election": E2016})), 415)
    huge = json.dumps({"candidate": "x" * (2 * 1024 * 1024), "election": E2016})
    assert_problem(requests.post(f"{api}/votes", data=huge, headers=JSON), 413)
    assert total_votes(api) == 0


@pytest.mark.parametrize("params", [{"page": "-1"}, {"size": "0"}, {"sort": "weight"}, {"size": "x"}])
def test_bad_paging_is_400(voter, params):
    assert_problem(requests.get(f"{voter.api}/votes", params=params), 400)
    assert_problem(requests.get(f"{voter.api}/candidates", params=params), 400)


# ---- bulk ingestion ----

def wait_batch(api, location, timeout=30):
    return wait_until(lambda: (lambda b: b if b["status"] != "queued" else None)(
        requests.get(location).json()), timeout=timeout, message="the batch completes")


def test_ndjson_batch_is_accepted_queued_and_written_with_per_line_rejections(voter):
    api = voter.api
    lines = [json.dumps({"candidate": "Jill Stein", "election": E2016})] * 700
    lines.insert(3, "{not json")
    lines.insert(10, json.dumps({"candidate": "Nobody", "election": E2016}))
    lines.insert(20, "")
    lines.insert(30, json.dumps({"candidate": "Jill Stein", "election": E2016, "extra": 1}))
    body = "\n".join(lines) + "\n"
    r = requests.post(f"{api}/votes/batch", data=body, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["total"] == 703 and accepted["accepted"] == 700 and accepted["rejected"] == 3
    assert r.headers["Location"] == accepted["statusUrl"]
    rejected_lines = sorted(x["line"] for x in accepted["rejections"])
    assert rejected_lines == [4, 11, 31]
    done = wait_batch(api, r.headers["Location"])
    assert done["status"] == "completed" and done["written"] == 700
    assert requests.get(f"{api}/results/{quote(E2016)}/votes").json() == {"votes": 700}
    assert total_votes(api) == 700


def test_json_array_batch(voter):
    api = voter.api
    votes = [{"candidate": "Gary Johnson", "election": E2016}, {"candidate": "Amy Zulu", "election": ODD}]
    r = requests.post(f"{api}/votes/batch", json=votes)
    assert r.status_code == 202 and r.json()["accepted"] == 2
    wait_batch(api, r.headers["Location"])
    assert requests.get(f"{api}/results/{quote(ODD, safe='')}/votes").json() == {"votes": 1}


def test_a_keyed_batch_retried_is_written_once(voter):
    api = voter.api
    votes = [{"candidate": "Gary Johnson", "election": E2016}] * 30 + [{"candidate": "Amy Zulu", "election": ODD}]
    key = {"Idempotency-Key": "batch-1", **caller_headers("POST", f"{api}/votes/batch", "c" * 64)}
    first = requests.post(f"{api}/votes/batch", json=votes, headers=key)
    again = requests.post(f"{api}/votes/batch", json=votes, headers=key)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert wait_batch(api, first.headers["Location"])["written"] == 31
    assert_problem(requests.post(f"{api}/votes/batch", json=votes[:3], headers=key), 422)
    other = requests.post(f"{api}/votes/batch", json=votes, headers={**key, **caller_headers("POST", f"{api}/votes/batch", "d" * 64)})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    wait_batch(api, other.headers["Location"])
    # after completion a retry changes nothing
    assert requests.post(f"{api}/votes/batch", json=votes, headers=key).json()["status"] == "completed"
    wait_until(lambda: total_votes(api) == 62, message="both batches written, the retries not")
    assert requests.get(f"{api}/results/{quote(E2016)}/votes").json() == {"votes": 60}


def test_bad_batches(voter):
    api = voter.api
    assert_problem(requests.post(f"{api}/votes/batch", data="{}", headers=JSON), 400)
    assert_problem(requests.post(f"{api}/votes/batch", data="[1,", headers=JSON), 400)
    assert_problem(requests.post(f"{api}/votes/batch", data="x", headers={"Content-Type": "text/csv"}), 415)
    assert_problem(requests.get(f"{api}/votes/batch/{'0' * 24}"), 404)
    assert total_votes(api) == 0


# Last in the file: without the fix it hangs the module's FerretDB for every later test.
def test_a_burst_of_votes_leaves_the_database_answering(service_factory, rabbit, amqp_exchange, mongo, ns):
    """120 votes inside one gathering of the tallied-flag writer (VOTER_FLAG_GATHER_MS; no
    reconciliation meanwhile): it must write their flags in commands of a few statements
    (MONGO_UPDATES_PER_COMMAND, shared/include/voter/mongo.h). FerretDB on PostgreSQL holds
    one of its 50 pooled connections per matching statement until an update command ends:
    the single bulk command of 120 statements it once sent waited forever for a 51st
    connection, and the database stopped answering every client (the chaos suite's
    "no answer for 240 s", seed 157448955)."""
    svc = start_voter(service_factory, rabbit, amqp_exchange,
                      {"RECONCILE_S": "3600", "VOTER_FLAG_GATHER_MS": "5000"})
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda i: vote(svc.api, CANDIDATES_2016[i % 6][0] + " " + CANDIDATES_2016[i % 6][1],
                                             timeout=10).status_code, range(120)))
    assert codes == [201] * 120
    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=5000)
    try:
        votes = client[f"voter_{ns}"]["votes"]
        wait_until(lambda: votes.count_documents({"tallied": True}) == 120, timeout=30,
                   message="every vote flagged tallied by the flag writer")
        assert votes.count_documents({"tallied": False}) == 0
    finally:
        client.close()
    assert requests.get(f"{svc.api}/results/{quote(E2016)}/votes", timeout=10).json() == {"votes": 120}
