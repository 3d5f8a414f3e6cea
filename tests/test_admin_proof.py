"""Admin operations sent straight to each service, without the gateway.

Every destructive endpoint (drops, replays, simulation GET and POST, DELETE of a vote, job
cancellation) needs the gateway's proof (shared/include/voter/proof.h) holding the `admin`
scope. Each case below is refused with 403 problem+json and leaves the service's database
exactly as it was: no proof, a malformed one, one made with another secret, an expired
one, one signed for another path or another method, one whose caller or scopes were
changed after signing, and a valid one without `admin`. Then a valid admin proof works.
A service without GATEWAY_PROOF_SECRET refuses even that (fail closed) and says so at
start; an unknown method is 405 with a metric label from a fixed set."""

from __future__ import annotations

import json
import time
from urllib.parse import quote, urlsplit

import pymongo
import pytest
import requests

import harness
from events import candidate_data, cloud_event, election_data, publish
from harness import admin_request as admin, wait_until
from jobs_helpers import fixture, jobs_env, slow_tabulate, status, submit_json

ELECTION = {"title": "2016 Presidential Election", "date": "2016-11-08",
            "electionType": "FEDERAL", "description": "58th quadrennial election"}
CANDIDATE = {"firstName": "Hillary", "lastName": "Clinton", "politicalParty": "Democratic Party",
             "election": ELECTION["title"], "homeState": "New York",
             "politcalExperience": "67th Secretary of State"}
E2016 = ELECTION["title"]
OTHER_SECRET = "another-deployment-secret-0123456789"


def oid(n: int) -> str:
    return f"{n:024x}"


# ---- what a refusal must look like ----

def snapshot(mongo, database: str) -> dict:
    """Every document of every collection of a database, in a comparable form."""
    client = pymongo.MongoClient(mongo.uri, directConnection=True)
    try:
        db = client[database]
        return {name: sorted(repr(sorted(d.items())) for d in db[name].find())
                for name in sorted(db.list_collection_names())}
    finally:
        client.close()


def settled_snapshot(mongo, database: str) -> dict:
    """A snapshot once two in a row agree (outbox relays and consumers have finished)."""
    last = [None]

    def stable():
        now = snapshot(mongo, database)
        same = now == last[0]
        last[0] = now
        return same
    wait_until(stable, timeout=20, interval=0.3, message=f"database {database} settles")
    return last[0]


def refusals(method: str, path: str, other_path: str) -> list[tuple[str, dict]]:
    """(name, headers) of every request that must be refused, for method and path as the
    service receives them; other_path is another admin path of the same service."""
    now = int(time.time())
    good = harness.proof_headers(method, path, consumer="k1")
    other_method = "GET" if method != "GET" else "POST"
    cases = [
        ("no proof", {}),
        ("scopes without proof", {"X-Consumer-ID": "k1", "X-Consumer-Scopes": harness.ADMIN_SCOPES}),
        ("malformed proof", dict(good, **{"X-Gateway-Proof": "t=1,sig=nothex"})),
        ("uppercase signature", dict(good, **{"X-Gateway-Proof": good["X-Gateway-Proof"].upper()})),
        ("another secret", harness.proof_headers(method, path, consumer="k1", secret=OTHER_SECRET)),
        ("expired", harness.proof_headers(method, path, consumer="k1", t=now - 3600)),
        ("from the future", harness.proof_headers(method, path, consumer="k1", t=now + 3600)),
        ("other path", harness.proof_headers(method, other_path, consumer="k1")),
        ("other method", harness.proof_headers(other_method, path, consumer="k1")),
        ("caller changed", dict(good, **{"X-Consumer-ID": "k2"})),
        ("scopes widened", dict(harness.proof_headers(method, path, consumer="k1", scopes="read vote"),
                                **{"X-Consumer-Scopes": "read vote admin"})),
        ("valid without admin", harness.proof_headers(method, path, consumer="k1",
                                                      scopes="read vote write")),
        ("admin as a prefix", harness.proof_headers(method, path, consumer="k1",
                                                    scopes="read administrator")),
    ]
    return cases


def wire_path(method: str, url: str) -> str:
    return urlsplit(requests.Request(method, url).prepare().url).path


def assert_all_refused(method: str, url: str, other_path: str, unchanged) -> None:
    """Sends every refusal; each is 403 problem+json and unchanged() holds after it."""
    path = wire_path(method, url)
    for name, headers in refusals(method, path, other_path):
        r = requests.request(method, url, headers=headers, timeout=30)
        assert r.status_code == 403, f"{name}: {r.status_code} {r.text}"
        assert r.headers["Content-Type"].startswith("application/problem+json"), name
        assert r.json()["status"] == 403 and "admin operation" in r.json()["detail"], name
        unchanged(name)


def db_unchanged(mongo, database: str):
    before = settled_snapshot(mongo, database)

    def check(name: str) -> None:
        assert snapshot(mongo, database) == before, f"{name}: the database changed"
    return check


# ---- election ----

@pytest.mark.parametrize("path", ["/election/drop/elections", "/election/events/replay"])
def test_election_admin_operations_need_the_admin_proof(service_factory, mongo, ns, path):
    svc = service_factory("election")
    for i in range(2):
        r = requests.post(f"{svc.url}/election/elections", json=dict(ELECTION, title=f"E{i}"))
        assert r.status_code == 201, r.text
    other = ({"/election/drop/elections", "/election/events/replay"} - {path}).pop()
    assert_all_refused("POST", svc.url + path, other, db_unchanged(mongo, f"election_{ns}"))
    r = admin("POST", svc.url + path)
    assert r.status_code in (202, 204), r.text
    remaining = requests.get(f"{svc.url}/election/elections").json()["page"]["totalElements"]
    assert remaining == (0 if "drop" in path else 2)


# ---- candidate ----

@pytest.mark.parametrize("path", ["/candidate/drop/candidates", "/candidate/drop/elections",
                                  "/candidate/events/replay"])
def test_candidate_admin_operations_need_the_admin_proof(service_factory, rabbit, amqp_exchange,
                                                         mongo, ns, path):
    svc = service_factory("candidate", env={"ELECTION_URL": f"http://127.0.0.1:{harness.free_port()}"})
    publish(rabbit.url, amqp_exchange,
            [cloud_event("election.created", oid(1), 1, election_data(oid(1), E2016))])
    wait_until(lambda: requests.get(f"{svc.url}/candidate/elections").json()["page"]["totalElements"] == 1,
               timeout=15, message="the election replica has the election")
    assert requests.post(f"{svc.url}/candidate/candidates", json=CANDIDATE).status_code == 201
    other = "/candidate/events/replay" if path != "/candidate/events/replay" else "/candidate/drop/candidates"
    assert_all_refused("POST", svc.url + path, other, db_unchanged(mongo, f"candidate_{ns}"))
    r = admin("POST", svc.url + path)
    assert r.status_code in (202, 204), r.text
    candidates = requests.get(f"{svc.url}/candidate/candidates").json()["page"]["totalElements"]
    elections = requests.get(f"{svc.url}/candidate/elections").json()["page"]["totalElements"]
    assert (candidates, elections) == {"/candidate/drop/candidates": (0, 1),
                                       "/candidate/drop/elections": (1, 0),
                                       "/candidate/events/replay": (1, 1)}[path]


# ---- voter ----

@pytest.fixture
def voter(service_factory, rabbit, amqp_exchange):
    svc = service_factory("voter", env={"CANDIDATE_URL": f"http://127.0.0.1:{harness.free_port()}"})
    events = [cloud_event("election.created", oid(1), 1, election_data(oid(1), E2016))]
    for i, (first, last) in enumerate([("Donald", "Trump"), ("Hillary", "Clinton")]):
        cid = oid(100 + i)
        events.append(cloud_event("candidate.created", cid, 1, candidate_data(cid, first, last, E2016)))
    publish(rabbit.url, amqp_exchange, events)
    wait_until(lambda: requests.get(f"{svc.url}/voter/candidates").json()["page"]["totalElements"] == 2,
               timeout=15, message="the candidate replica has the 2 candidates")
    for name in ("Donald Trump", "Hillary Clinton", "Hillary Clinton"):
        r = requests.post(f"{svc.url}/voter/votes", json={"candidate": name, "election": E2016})
        assert r.status_code == 201, r.text
    svc.vote_id = r.json()["id"]
    return svc


def total_votes(svc) -> int:
    return requests.get(f"{svc.url}/voter/votes").json()["page"]["totalElements"]


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/voter/votes/{vote}"),
    ("POST", "/voter/simulation/{election}"),
    ("GET", "/voter/simulation/{election}"),
    ("POST", "/voter/drop/votes"),
    ("POST", "/voter/drop/candidates"),
])
def test_voter_admin_operations_need_the_admin_proof(voter, mongo, ns, method, path):
    url = voter.url + path.format(vote=voter.vote_id, election=quote(E2016))
    assert_all_refused(method, url, "/voter/drop/votes" if "drop/votes" not in path else "/voter/drop/candidates",
                       db_unchanged(mongo, f"voter_{ns}"))
    assert total_votes(voter) == 3
    r = admin(method, url)
    assert r.status_code in (200, 204), r.text
    after = total_votes(voter)
    if "simulation" in path:
        assert after >= 3 + 2 * 3
    else:
        assert after == {"/voter/votes/{vote}": 2, "/voter/drop/votes": 0,
                         "/voter/drop/candidates": 3}[path]


def test_head_never_runs_the_simulation(voter, mongo, ns):
    """HEAD on the GET compatibility alias of the simulation is 405 (HEAD is safe; the alias
    casts votes), whatever proof it carries: none, an admin proof for HEAD, one for GET."""
    path = f"/voter/simulation/{quote(E2016)}"
    unchanged = db_unchanged(mongo, f"voter_{ns}")
    for name, headers in [("no proof", {}),
                          ("admin proof for HEAD", harness.proof_headers("HEAD", path)),
                          ("admin proof for GET", harness.proof_headers("GET", path))]:
        r = requests.head(voter.url + path, headers=headers)
        assert r.status_code == 405, (name, r.status_code)
        allow = {m.strip() for m in r.headers["Allow"].split(",")}
        assert {"GET", "POST"} <= allow and "HEAD" not in allow, (name, allow)
        unchanged(f"HEAD simulation, {name}")
    assert total_votes(voter) == 3
    # an ordinary GET route still answers HEAD
    assert requests.head(f"{voter.url}/voter/votes").status_code == 200


def test_voter_drop_candidates_passes_the_proof_on_to_the_candidate_replay(service_factory):
    """The voter asks the candidate service to replay with the admin caller's proof, signed
    for that request: the replay is accepted (no Warning)."""
    election = service_factory("election")
    candidate = service_factory("candidate", env={"ELECTION_URL": election.url})
    voter = service_factory("voter", env={"CANDIDATE_URL": candidate.url})
    r = admin("POST", f"{voter.url}/voter/drop/candidates", consumer="ops")
    assert r.status_code == 204 and "Warning" not in r.headers, r.headers
    lines = [json.loads(l) for l in candidate.log_lines() if l.startswith("{")]
    assert any(l.get("path") == "/candidate/events/replay" and l.get("status") == 202 for l in lines)


# ---- jobs ----

def test_job_cancellation_needs_the_admin_proof(service_factory, tmp_path):
    wrapper = slow_tabulate(tmp_path / "slow-tabulate", 60)
    svc = service_factory("jobs", env=jobs_env(tmp_path / "work", JOBS_TABULATE_BIN=wrapper))
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    wait_until(lambda: status(svc.url, job_id)["status"] == "running", timeout=15)
    url = f"{svc.url}/jobs/{job_id}"

    def still_running(name):
        assert status(svc.url, job_id)["status"] == "running", f"{name}: the job changed"
    assert_all_refused("DELETE", url, f"/jobs/{'0' * 24}", still_running)
    r = admin("DELETE", url)
    assert r.status_code == 202, r.text
    wait_until(lambda: status(svc.url, job_id)["status"] == "cancelled", timeout=15)


# ---- without a secret: fail closed ----

@pytest.mark.parametrize("secret", [None, "too-short"])
def test_without_a_proper_secret_admin_is_refused(service_factory, mongo, ns, secret):
    svc = service_factory("election", env={"GATEWAY_PROOF_SECRET": secret})
    assert requests.post(f"{svc.url}/election/elections", json=ELECTION).status_code == 201
    unchanged = db_unchanged(mongo, f"election_{ns}")
    r = admin("POST", f"{svc.url}/election/drop/elections")
    assert r.status_code == 403 and "no gateway secret" in r.json()["detail"], r.text
    unchanged("valid admin proof, no secret at the service")
    warnings = [l for l in svc.log_lines() if "GATEWAY_PROOF_SECRET" in l]
    assert len(warnings) == 1 and "admin operations are refused" in warnings[0], warnings


# ---- rotation ----

def test_a_previous_secret_is_accepted_only_while_configured(service_factory, mongo, ns):
    """Rotating GATEWAY_PROOF_SECRET (docs/operations.md): a service given the old secret as
    GATEWAY_PROOF_SECRET_PREVIOUS accepts proofs made with either; one without it refuses the
    old one; a third secret is refused throughout."""
    old = "previous-deployment-secret-0123456789"
    path = "/election/events/replay"

    def replay(svc, secret):
        headers = harness.proof_headers("POST", path, secret=secret)
        return requests.post(svc.url + path, headers=headers)
    during = service_factory("election", env={"GATEWAY_PROOF_SECRET_PREVIOUS": old})
    assert replay(during, old).status_code == 202
    assert replay(during, harness.PROOF_SECRET).status_code == 202
    r = replay(during, OTHER_SECRET)
    assert r.status_code == 403 and "signature" in r.json()["detail"], r.text
    after = service_factory("election")
    assert requests.post(f"{after.url}/election/elections", json=ELECTION).status_code == 201
    unchanged = db_unchanged(mongo, f"election_{ns}")
    r = requests.post(f"{after.url}/election/drop/elections",
                      headers=harness.proof_headers("POST", "/election/drop/elections", secret=old))
    assert r.status_code == 403 and "signature" in r.json()["detail"], r.text
    unchanged("old secret after the rotation")
    assert replay(after, harness.PROOF_SECRET).status_code == 202
    # a previous secret never stands in for a missing current one
    alone = service_factory("election", env={"GATEWAY_PROOF_SECRET": None, "GATEWAY_PROOF_SECRET_PREVIOUS": old})
    r = replay(alone, old)
    assert r.status_code == 403 and "no gateway secret" in r.json()["detail"], r.text


# ---- methods ----

def test_unknown_methods_are_405_with_a_bounded_metric_label(service_factory):
    svc = service_factory("election")
    for method in ("BREW", "PROPFIND", "X1", "TRACE"):
        r = requests.request(method, f"{svc.url}/election/elections")
        assert r.status_code == 405 and r.headers["Content-Type"].startswith("application/problem+json")
        assert "GET" in r.headers["Allow"]
    metrics = requests.get(f"{svc.url}/election/metrics").text
    for method in ("BREW", "PROPFIND", "X1", "TRACE"):
        assert f'method="{method}"' not in metrics
    assert 'method="other",status="405"' in metrics
