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
from jobs_helpers import jobs_env
from web_helpers import SSE, SAMPLE, enc, load_sample, tally

E2016 = "2016 Presidential Election"
TRUMP, CLINTON = "Donald Trump", "Hillary Clinton"
# The key that grants the admin actions (drop, replay, simulation) on this branch's gateway
# configuration; once scoped keys exist this becomes the admin-scoped key.
ADMIN_KEY = "demo-paid-key"
TABULATE_KEY = "demo-free-key"
STREAMS_PER_CLIENT = 3


def vote(base, candidate, election=E2016, **kw):
    return requests.post(f"{base}/voter/votes", json={"candidate": candidate, "election": election}, **kw)


class Stack:
    """The services of one test; .url is the gateway's."""


@pytest.fixture
def make_stack(service_factory, tmp_path):
    """election, candidate, voter (one or two replicas) and the gateway serving web/ (its
    voter route goes to the first replica only), optionally the jobs service; the sample
    data loaded."""

    def make(voters: int = 1, jobs: bool = False, voter_env: dict | None = None) -> Stack:
        s = Stack()
        s.election = service_factory("election")
        s.candidate = service_factory("candidate", env={"ELECTION_URL": s.election.url})
        s.voters = [service_factory("voter", env={"CANDIDATE_URL": s.candidate.url, **(voter_env or {})})
                    for _ in range(voters)]
        s.voter = s.voters[0]
        s.jobs = service_factory("jobs", env=jobs_env(tmp_path / "work")) if jobs else None
        s.gateway = service_factory("gateway", env={
            "GATEWAY_CONFIG": str(harness.repo_root() / "gateway" / "gateway.example.json"),
            "GATEWAY_WEB_ROOT": str(harness.repo_root() / "web"),
            "GATEWAY_MAX_STREAMS_PER_CLIENT": str(STREAMS_PER_CLIENT),
            "ELECTION_URL": s.election.url, "CANDIDATE_URL": s.candidate.url, "VOTER_URL": s.voter.url,
            "JOBS_URL": s.jobs.url if jobs else "127.0.0.1:9"})
        s.url = s.gateway.url
        load_sample(s.url, [v.url for v in s.voters])
        return s

    return make


@pytest.fixture
def stack(make_stack):
    return make_stack()


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


def test_a_vote_on_another_replica_reaches_the_stream_over_the_broker(make_stack):
    # re-reads every minute only: within 2 s, only the broker's announcement can do it
    s = make_stack(voters=2, voter_env={"STREAM_RECHECK_MS": "60000"})
    a, b = s.voters
    es = SSE(f"{a.url}/voter/results/{enc(E2016)}/stream")
    try:
        es.next()
        assert vote(b.url, CLINTON).status_code == 201
        es.results_until(lambda d: tally(d, CLINTON) == 1, timeout=2)
        # a simulation (many votes at once) on the other replica: one more event
        assert requests.post(f"{b.url}/voter/simulation/{enc(E2016)}").status_code == 200
        es.results_until(lambda d: tally(d, CLINTON) > 1, timeout=2)
    finally:
        es.close()


def test_unannounced_changes_are_found_by_the_periodic_re_read(stack):
    # bulk ingestion announces nothing: the 1 s re-read of watched elections finds it
    es = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream")
    try:
        es.next()
        lines = "\n".join(json.dumps({"candidate": TRUMP, "election": E2016}) for _ in range(5))
        r = requests.post(f"{stack.voter.url}/voter/votes/batch", data=lines,
                          headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 202, r.text
        es.results_until(lambda d: tally(d, TRUMP) == 5, timeout=10)
    finally:
        es.close()


def test_heartbeats_keep_a_quiet_stream_open(make_stack):
    s = make_stack(voter_env={"STREAM_HEARTBEAT_S": "1"})
    es = SSE(f"{s.url}/voter/results/{enc(E2016)}/stream")  # through the gateway
    try:
        es.next()
        wait_until(lambda: es.comments >= 3, timeout=8, message="three heartbeats")
        assert not es.closed.is_set()
    finally:
        es.close()


# ---------------------------------------------------------------- the gateway

def test_gateway_serves_the_client_with_types_etags_and_a_strict_csp(stack):
    base = stack.url
    page = requests.get(f"{base}/")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.text
    assert "<script" in html and all('src="/web/' in tag for tag in html.split("<script")[1:])
    assert "http://" not in html.replace('xmlns="http://www.w3.org', "") and "https://" not in html
    for path, ctype in (("/web/js/app.js", "text/javascript; charset=utf-8"),
                        ("/web/css/app.css", "text/css; charset=utf-8"),
                        ("/web/favicon.svg", "image/svg+xml"),
                        ("/web/samples/small-irv.ballots.csv", "text/csv; charset=utf-8"),
                        ("/web/samples/small-irv.rules.json", "application/json")):
        r = requests.get(base + path)
        assert r.status_code == 200 and r.headers["Content-Type"] == ctype, path
        assert (harness.repo_root() / "web" / path[5:]).read_bytes() == r.content
        etag = r.headers["ETag"]
        again = requests.get(base + path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
        assert requests.head(base + path).headers["ETag"] == etag
    # nothing else is served from the folder, and the folder is not an API route
    assert requests.get(f"{base}/web/nothing.js").status_code == 404
    assert requests.get(f"{base}/web/js").status_code == 404
    assert requests.post(f"{base}/web/js/app.js").status_code in (404, 405)
    # no external resource anywhere in the client
    for f in (harness.repo_root() / "web").rglob("*"):
        if f.suffix in (".html", ".js", ".css"):
            text = f.read_text()
            assert "https://" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", ""), f


def test_the_original_clients_calls_are_unchanged(stack):
    base = stack.url
    assert vote(base, TRUMP).status_code == 201
    for path, key in ((f"/voter/results/{enc(E2016)}", "results"), (f"/voter/results/{enc(E2016)}/votes", "votes"),
                      (f"/voter/winners/{enc(E2016)}", "results"), (f"/voter/candidates/{enc(E2016)}", "candidates"),
                      ("/election/summary", "elections"), ("/candidate/candidates/summary", "candidates")):
        doc = requests.get(base + path).json()
        assert list(doc) == [key], path


def test_the_gateway_streams_without_buffering_and_limits_streams_per_client(make_stack):
    # a client that leaves is noticed at the next write to it: the heartbeat
    stack = make_stack(voter_env={"STREAM_HEARTBEAT_S": "2"})
    url = f"{stack.url}/voter/results/{enc(E2016)}/stream"
    streams = [SSE(url) for _ in range(STREAMS_PER_CLIENT)]
    try:
        for es in streams:
            assert es.status == 200 and es.headers["content-type"].startswith("text/event-stream")
            es.next()
        refused = requests.get(url, headers={"Accept": "text/event-stream"}, timeout=5)
        assert refused.status_code == 429, refused.text
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert f"at most {STREAMS_PER_CLIENT}" in refused.json()["detail"]
        # every open stream gets the next change at once, through the gateway
        assert vote(stack.url, TRUMP).status_code == 201
        for es in streams:
            es.results_until(lambda d: tally(d, TRUMP) == 1, timeout=2)
        metrics = requests.get(f"{stack.url}/gateway/metrics").text
        assert f"gateway_streams_open {STREAMS_PER_CLIENT}" in metrics
        assert 'gateway_streams_total{result="refused"} 1' in metrics
    finally:
        for es in streams:
            es.close()
    # closed streams give their slots back (noticed at the next heartbeat or two)
    wait_until(lambda: "gateway_streams_open 0" in requests.get(f"{stack.url}/gateway/metrics").text,
               timeout=20, interval=0.5, message="the slots are released")
    again = SSE(url)
    try:
        assert again.status == 200
    finally:
        again.close()
