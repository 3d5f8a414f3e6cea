"""The web client (web/, served by the gateway at /) and the live results it stands on:
the voter's Server-Sent Events stream, directly and through the gateway, with one and two
voter replicas; then the pages themselves in headless Chromium (Debian's chromium +
chromium-driver + python3-selenium) against the real stack."""

from __future__ import annotations

import json

import pytest
import requests

import harness
from harness import wait_until
from web_helpers import SSE, SAMPLE, enc, load_sample, tally

E2016 = "2016 Presidential Election"
TRUMP, CLINTON = "Donald Trump", "Hillary Clinton"
# The key that grants the admin actions (drop, replay, simulation) on this branch's gateway
# configuration; once scoped keys exist this becomes the admin-scoped key.
ADMIN_KEY = "demo-paid-key"


def vote(base, candidate, election=E2016, **kw):
    return requests.post(f"{base}/voter/votes", json={"candidate": candidate, "election": election}, **kw)


@pytest.fixture
def stack(service_factory):
    """election, candidate, voter and the gateway serving web/, with the sample data."""
    election = service_factory("election")
    candidate = service_factory("candidate", env={"ELECTION_URL": election.url})
    voter = service_factory("voter", env={"CANDIDATE_URL": candidate.url})
    gateway = service_factory("gateway", env={
        "GATEWAY_CONFIG": str(harness.repo_root() / "gateway" / "gateway.example.json"),
        "GATEWAY_WEB_ROOT": str(harness.repo_root() / "web"),
        "ELECTION_URL": election.url, "CANDIDATE_URL": candidate.url, "VOTER_URL": voter.url,
        "JOBS_URL": "127.0.0.1:9"})
    load_sample(gateway.url, [voter.url])

    class Stack:
        pass
    s = Stack()
    s.election, s.candidate, s.voter, s.gateway, s.url = election, candidate, voter, gateway, gateway.url
    return s


# ---------------------------------------------------------------- the stream, over HTTP

def test_stream_sends_the_state_then_every_change(stack):
    es = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream")
    try:
        assert es.status == 200 and es.headers["content-type"].startswith("text/event-stream")
        first = es.next()
        assert first["event"] == "results" and json.loads(first["data"]) == {"results": []}
        assert vote(stack.voter.url, TRUMP).status_code == 201
        ev = es.results_until(lambda d: tally(d, TRUMP) == 1, timeout=2)
        assert ev["id"] and ev["id"] != first["id"]
        # the same document as GET /voter/results/{election}
        assert json.loads(ev["data"]) == requests.get(f"{stack.voter.url}/voter/results/{enc(E2016)}").json()
    finally:
        es.close()


def test_stream_resume_with_the_current_id_repeats_nothing(stack):
    assert vote(stack.voter.url, CLINTON).status_code == 201
    es = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream")
    first = es.next()
    es.close()
    again = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream", last_event_id=first["id"])
    stale = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream", last_event_id="0123456789abcdef")
    try:
        assert stale.next()["id"] == first["id"]  # an old id gets the current state at once
        with pytest.raises(Exception):
            again.next(timeout=1.5)  # the current id: nothing to repeat
        assert vote(stack.voter.url, CLINTON).status_code == 201
        assert tally(json.loads(again.next(timeout=2)["data"]), CLINTON) == 2
    finally:
        again.close()
        stale.close()
