"""The whole suite through the gateway, as a client of the original would use it: the
election, candidate and voter services behind the gateway with its example configuration,
anonymous reads and votes, writes with a key that holds the write scope, the 35-vote fixture,
headers passing through intact."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

import harness
from harness import wait_until

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "votes-35.json").read_text())
SAMPLE = json.loads((harness.repo_root() / "scripts" / "data" / "sample-data.json").read_text())
E2016 = "2016 Presidential Election"


# the example configuration ships no keys: the test brings its own (the local stack generates
# them, see scripts/stack)
WRITE = {"X-API-Key": "e2e-paid-key"}
ADMIN = {"X-API-Key": "e2e-admin-key"}


@pytest.fixture
def gw(service_factory, tmp_path):
    keys = tmp_path / "gateway-keys.json"
    keys.write_text(json.dumps({"e2e-paid-key": "paid", "e2e-admin-key": "admin"}))
    election = service_factory("election")
    candidate = service_factory("candidate", env={"ELECTION_URL": election.url})
    voter = service_factory("voter", env={"CANDIDATE_URL": candidate.url})
    gateway = service_factory("gateway", env={
        "GATEWAY_CONFIG": str(harness.repo_root() / "gateway" / "gateway.example.json"),
        "ELECTION_URL": election.url, "CANDIDATE_URL": candidate.url, "VOTER_URL": voter.url,
        "JOBS_URL": "127.0.0.1:9", "GATEWAY_KEYS_FILE": str(keys)})
    return gateway.url


def test_upstream_headers_pass_through_intact(gw):
    r = requests.post(f"{gw}/election/elections", json=SAMPLE["elections"][1], headers=WRITE)
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"] == "application/hal+json"
    assert r.headers["ETag"] == '"1"'
    assert r.headers["Location"].startswith(gw + "/election/elections/")  # the client's view
    assert r.headers["X-Request-ID"]  # a paid key writes without a limit: no RateLimit here
    item = r.json()
    again = requests.get(r.headers["Location"], headers={"If-None-Match": '"1"'})
    assert again.status_code == 304
    problem = requests.get(f"{gw}/election/elections/{'0' * 24}")
    assert problem.status_code == 404 and problem.headers["Content-Type"] == "application/problem+json"
    assert "RateLimit" in problem.headers  # an anonymous read
    assert requests.delete(f"{gw}/election/elections/{item['id']}", headers=WRITE).status_code == 204


def test_the_original_flow_and_the_35_vote_fixture_through_the_gateway(gw):
    for e in SAMPLE["elections"]:
        assert requests.post(f"{gw}/election/elections", json=e, headers=WRITE).status_code == 201
    titles = {e["title"] for e in SAMPLE["elections"]}
    wait_until(lambda: {e["title"] for e in requests.get(f"{gw}/candidate/elections?size=100").json()
                        ["_embedded"]["elections"]} == titles, timeout=30)
    for c in SAMPLE["candidates"]:
        assert requests.post(f"{gw}/candidate/candidates", json=c, headers=WRITE).status_code == 201, c
    wanted = {f"{c['firstName']} {c['lastName']}" for c in SAMPLE["candidates"] if c["election"] == E2016}
    wait_until(lambda: {c["fullName"] for c in requests.get(f"{gw}/voter/candidates/{quote(E2016)}").json()
                        ["candidates"]} == wanted, timeout=30)
    for v in FIXTURE["votes"]:
        assert requests.post(f"{gw}/voter/votes", json=v).status_code == 201
    enc = quote(E2016)
    expect = FIXTURE["expect"]
    assert requests.get(f"{gw}/voter/results/{enc}").json()["results"][0] == expect["results_head"]
    assert requests.get(f"{gw}/voter/results/{enc}/votes").json() == {"votes": expect["total"]}
    assert requests.get(f"{gw}/voter/winners/{enc}").json() == {"results": expect["winners"]}
    assert requests.get(f"{gw}/voter/winners/{enc}/votes").json() == {"votes": expect["winners_votes"]}
    # the /v1 prefix reaches the same services
    assert requests.get(f"{gw}/v1/voter/results/{enc}/votes").json() == {"votes": expect["total"]}
    # replays need the admin scope at the gateway
    assert requests.post(f"{gw}/election/events/replay").status_code == 401
    assert requests.post(f"{gw}/election/events/replay", headers=WRITE).status_code == 403
    assert requests.post(f"{gw}/election/events/replay", headers=ADMIN).status_code == 202


def test_an_update_propagates_to_both_replicas(gw):
    e = requests.post(f"{gw}/election/elections", json=SAMPLE["elections"][0], headers=WRITE).json()
    r = requests.patch(f"{gw}/election/elections/{e['id']}", json={"description": "changed"}, headers=WRITE)
    assert r.status_code == 200 and r.json()["version"] == 2

    def replica(url):
        items = requests.get(url).json()["_embedded"]["elections"]
        return [(x["id"], x["description"], x["version"]) for x in items]
    want = [(e["id"], "changed", 2)]
    wait_until(lambda: replica(f"{gw}/candidate/elections") == want, timeout=20)
    wait_until(lambda: replica(f"{gw}/voter/elections") == want, timeout=20)
