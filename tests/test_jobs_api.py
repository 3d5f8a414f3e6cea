"""Job service over real HTTP with real RabbitMQ and FerretDB and the `local` runner running
the real `tabulate` from the build directory: submission, validation, polling, results by
signed URL, idempotency, listing, logs and events."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

import harness
from harness import admin_request as admin
from events import EventTap, queue_depth
from jobs_helpers import (SECRET, big_ballots, fixture, jobs_env, sign, slow_tabulate, status,
                          submit_json, submit_multipart, wait_final)


@pytest.fixture
def jobs(service_factory, tmp_path):
    svc = service_factory("jobs", env=jobs_env(tmp_path / "work"))
    svc.work_dir = tmp_path / "work"
    return svc


def assert_problem(r, status_code, field=None):
    assert r.status_code == status_code, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    if field:
        assert any(e["field"].startswith(field) for e in r.json()["errors"]), r.json()
    return r.json()


def finished_result(base, job_id):
    r = wait_final(base, job_id)
    assert r.status_code == 303, r.text
    loc = r.headers["Location"]
    assert f"/jobs/{job_id}/result?expires=" in loc and "&sig=" in loc
    got = requests.get(loc, timeout=10)
    assert got.status_code == 200, got.text
    assert got.headers["Content-Type"].startswith("application/json")
    return got


@pytest.mark.parametrize("name", ["small-irv", "small-batch", "stv-fractional"])
def test_submit_poll_303_and_result_equals_the_fixture(jobs, name):
    fx = fixture(name)
    r = submit_json(jobs.url, fx["rules"], fx["ballots"])
    assert r.status_code == 202, r.text
    body = r.json()
    job_id = body["id"]
    assert body["status"] == "pending"
    assert body["statusUrl"] == f"{jobs.url}/jobs/{job_id}" == body["cancelUrl"]
    assert r.headers["Location"] == body["statusUrl"]
    assert int(r.headers["Retry-After"]) >= 1
    got = finished_result(jobs.url, job_id)
    assert got.content == fx["expected"]  # byte for byte what tabulate wrote
    assert got.json() == json.loads(fx["expected"])
    st = status(jobs.url, job_id)
    assert st["status"] == "succeeded" and st["attempts"] == 1 and st["exitCode"] == 0
    assert st["reason"] is None and st["ballots"] == 23 if name == "small-irv" else True


def test_multi_winner_json_rules_keep_the_percentage_written(jobs):
    # TABULATION-MULTI.md §6: 15.555 % of 27 votes is 4.19985 exactly, which needs the
    # decimal as written, not the nearest double, after the service re-serialises the rules
    rules = {"contest": "pct", "candidates": [{"name": n} for n in "ABCD"], "winners": 0,
             "winner_mode": "bottoms_up_percentage", "threshold_percentage": 15.555,
             "overvote": "exhaust_immediately", "max_skipped_ranks": 1, "max_rankings": 1,
             "tiebreak": "candidate_order"}
    ballots = "rank1\n" + "A\n" * 10 + "B\n" * 8 + "C\n" * 5 + "D\n" * 4
    r = submit_json(jobs.url, rules, ballots)
    assert r.status_code == 202, r.text
    got = finished_result(jobs.url, r.json()["id"])
    assert b'"threshold": 4.19985,' in got.content
    assert got.json()["winners"] == ["A", "B", "C"]


def test_multipart_submission(jobs):
    fx = fixture("small-irv")
    r = submit_multipart(jobs.url, fx["rules"], fx["ballots"])
    assert r.status_code == 202, r.text
    assert finished_result(jobs.url, r.json()["id"]).content == fx["expected"]


def test_pending_or_running_is_202_with_location_and_progress(jobs, tmp_path):
    fx = fixture("small-irv")
    job_id = submit_json(jobs.url, fx["rules"], fx["ballots"]).json()["id"]
    r = requests.get(f"{jobs.url}/jobs/{job_id}", allow_redirects=False)
    if r.status_code == 202:  # unless it was already done
        doc = r.json()
        assert r.headers["Location"] == f"{jobs.url}/jobs/{job_id}"
        assert set(doc["progress"]) == {"done", "total", "message"}
        assert doc["status"] in ("pending", "running") and "createdAt" in doc
    assert wait_final(jobs.url, job_id).status_code == 303


def test_idempotency_key_same_body_same_job_other_body_409(jobs):
    fx = fixture("small-irv")
    key = {"Idempotency-Key": "submit-42"}
    first = submit_json(jobs.url, fx["rules"], fx["ballots"], headers=key)
    assert first.status_code == 202
    # the same inputs as multipart: the same submission
    again = submit_multipart(jobs.url, fx["rules"], fx["ballots"], headers=key)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = submit_json(jobs.url, fx["rules"], fx["ballots"] + "b24,D,C,\n", headers=key)
    assert_problem(other, 409)
    # another caller may use the same key for something else
    mine = submit_json(jobs.url, fx["rules"], fx["ballots"] + "b24,D,C,\n",
                       headers={**key, "X-API-Key": "someone-else"})
    assert mine.status_code == 202 and mine.json()["id"] != first.json()["id"]
    assert requests.get(f"{jobs.url}/jobs").json()["page"]["totalElements"] == 1


def test_body_over_10_mb_is_413(jobs):
    ballots = "id,rank1\n" + "x,A\n" * (10 * 1024 * 1024 // 4 + 10)
    r = requests.post(f"{jobs.url}/jobs/tabulations", data=ballots,
                      headers={"Content-Type": "text/csv"})
    assert_problem(r, 413)

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(11 * 16):
            yield b"x" * 65536
    r = requests.post(f"{jobs.url}/jobs/tabulations", data=chunks(),
                      headers={"Content-Type": "application/json"})
    assert_problem(r, 413)
    # just under the limit is accepted (and counted)
    fx = fixture("small-irv")
    rows = big_ballots(200_000)
    assert len(rows) < 10 * 1024 * 1024 - 4096
    r = submit_json(jobs.url, fx["rules"], rows)
    assert r.status_code == 202, r.text
    assert status(jobs.url, r.json()["id"])["ballots"] == 200_000


def test_invalid_inputs_are_refused_and_nothing_is_enqueued(jobs, rabbit, queue):
    fx = fixture("small-irv")
    rules = json.loads(fx["rules"])
    # malformed JSON body
    r = requests.post(f"{jobs.url}/jobs/tabulations", data="{", headers={"Content-Type": "application/json"})
    assert_problem(r, 400)
    # not a supported type
    assert_problem(requests.post(f"{jobs.url}/jobs/tabulations", data="x",
                                 headers={"Content-Type": "text/plain"}), 415)
    # rules with a bad enum, located by the tabulator's own parser
    bad = dict(rules, tiebreak="coin_flip")
    p = assert_problem(submit_json(jobs.url, bad, fx["ballots"]), 422, "rules.tiebreak")
    assert "tiebreak" in p["detail"]
    # rules missing a required member
    bad = {k: v for k, v in rules.items() if k != "overvote"}
    assert_problem(submit_json(jobs.url, bad, fx["ballots"]), 422, "rules")
    # multipart rules that are not JSON: line and column
    p = assert_problem(submit_multipart(jobs.url, '{"contest": ', fx["ballots"]), 422, "rules")
    assert p["errors"][0]["line"] == 1
    # an unknown candidate in row 3 (line 4 of the file), column rank2
    ballots = fx["ballots"].replace("b03,A,B,C", "b03,A,Zed,C")
    p = assert_problem(submit_json(jobs.url, rules, ballots), 422, "ballots.rank2")
    assert p["errors"][0]["line"] == 4 and p["errors"][0]["column"] == 3
    assert "Zed" in p["errors"][0]["message"]
    # an empty ballots file, missing parts, unknown fields, a bad callback URL
    assert_problem(submit_json(jobs.url, rules, ""), 422, "ballots")
    assert_problem(requests.post(f"{jobs.url}/jobs/tabulations", json={"rules": rules}), 422, "ballots")
    assert_problem(submit_json(jobs.url, rules, fx["ballots"], extra=1), 422, "extra")
    assert_problem(submit_json(jobs.url, rules, fx["ballots"], callbackUrl="ftp://x"), 422, "callbackUrl")
    r = requests.post(f"{jobs.url}/jobs/tabulations", files={"rules": ("r.json", fx["rules"])})
    assert_problem(r, 422, "ballots")
    # multi-winner rules the program refuses are refused here, naming the member
    assert_problem(submit_json(jobs.url, dict(rules, winners=2), fx["ballots"]), 422,
                   "rules.winners")  # 2 seats need a winner_mode
    bad = dict(rules, winners=2, winner_mode="bottoms_up", hare_quota=True)
    assert_problem(submit_json(jobs.url, bad, fx["ballots"]), 422, "rules.hare_quota")
    # nothing stored, nothing enqueued
    assert requests.get(f"{jobs.url}/jobs").json()["page"]["totalElements"] == 0
    assert queue_depth(rabbit.url, queue("jobs.work")) == 0


def test_unknown_job_is_404_and_bad_wait_is_400(jobs):
    for path in ("", "/result?expires=1&sig=00", "/logs"):
        r = requests.get(f"{jobs.url}/jobs/{'a' * 24}{path}")
        assert r.status_code in (403, 404), (path, r.status_code)
    assert_problem(requests.get(f"{jobs.url}/jobs/{'a' * 24}"), 404)
    assert_problem(admin("DELETE", f"{jobs.url}/jobs/nope"), 404)
    assert_problem(requests.get(f"{jobs.url}/jobs/{'a' * 24}", params={"wait": "61"}), 400)
    assert_problem(requests.get(f"{jobs.url}/jobs/{'a' * 24}", params={"wait": "x"}), 400)


def test_signed_result_url_tampering_and_expiry_are_403(jobs):
    fx = fixture("small-irv")
    job_id = submit_json(jobs.url, fx["rules"], fx["ballots"]).json()["id"]
    finished_result(jobs.url, job_id)
    url = f"{jobs.url}/jobs/{job_id}/result"
    future = int(time.time()) + 300
    ok = requests.get(url, params={"expires": future, "sig": sign(job_id, future)})
    assert ok.status_code == 200 and ok.content == fx["expected"]
    # a changed expiry, a changed signature, another job's id, a wrong secret
    assert_problem(requests.get(url, params={"expires": future + 1, "sig": sign(job_id, future)}), 403)
    bad = sign(job_id, future)
    bad = ("0" if bad[0] != "0" else "1") + bad[1:]
    assert_problem(requests.get(url, params={"expires": future, "sig": bad}), 403)
    other = "b" * 24
    assert_problem(requests.get(f"{jobs.url}/jobs/{other}/result",
                                params={"expires": future, "sig": sign(job_id, future)}), 403)
    assert_problem(requests.get(url, params={"expires": future, "sig": sign(job_id, future, "x")}), 403)
    assert_problem(requests.get(url), 403)
    # correctly signed but expired
    past = int(time.time()) - 1
    p = assert_problem(requests.get(url, params={"expires": past, "sig": sign(job_id, past)}), 403)
    assert "expired" in p["detail"]


def test_failed_count_is_200_with_reason_exit_code_and_logs(jobs):
    """A tie with tiebreak "stop" cannot be told apart before counting: the job is accepted
    and fails with tabulate's exit code 3 and its reason."""
    rules = {"contest": "Tie", "candidates": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
             "overvote": "exhaust_immediately", "max_skipped_ranks": "unlimited",
             "max_rankings": "max", "tiebreak": "stop"}
    ballots = "rank1,rank2\nA,\nB,\nC,\nA,\nB,\n"
    job_id = submit_json(jobs.url, rules, ballots).json()["id"]
    r = wait_final(jobs.url, job_id)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "failed" and doc["exitCode"] == 3
    assert "could not finish" in doc["reason"]
    assert doc["logsUrl"] == f"{jobs.url}/jobs/{job_id}/logs"
    logs = requests.get(doc["logsUrl"])
    assert logs.status_code == 200 and "count stopped" in logs.text
    assert_problem(admin("DELETE", f"{jobs.url}/jobs/{job_id}"), 409)


def test_wait_returns_early_when_the_status_changes(service_factory, tmp_path):
    from jobs_helpers import slow_tabulate
    wrapper = slow_tabulate(tmp_path / "slow.sh", 1.5)
    svc = service_factory("jobs", env=jobs_env(tmp_path / "work", JOBS_TABULATE_BIN=wrapper))
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    first = status(svc.url, job_id)["status"]
    t0 = time.monotonic()
    r = requests.get(f"{svc.url}/jobs/{job_id}", params={"wait": 30}, allow_redirects=False, timeout=40)
    took = time.monotonic() - t0
    assert took < 10, took
    assert r.json()["status"] != first or r.status_code == 303
    # and waits while nothing changes: a finished job answers at once
    r = wait_final(svc.url, job_id)
    t0 = time.monotonic()
    assert requests.get(f"{svc.url}/jobs/{job_id}", params={"wait": 5}, allow_redirects=False).status_code == 303
    assert time.monotonic() - t0 < 2


def test_list_is_hal_per_api_key_with_status_filter(jobs):
    fx = fixture("small-irv")
    mine = {"X-API-Key": "key-one"}
    a = submit_json(jobs.url, fx["rules"], fx["ballots"], headers=mine).json()["id"]
    b = submit_json(jobs.url, fx["rules"], fx["ballots"], headers={"X-API-Key": "key-two"}).json()["id"]
    c = submit_json(jobs.url, fx["rules"], fx["ballots"]).json()["id"]
    for job_id in (a, b, c):
        wait_final(jobs.url, job_id)
    r = requests.get(f"{jobs.url}/jobs", headers=mine)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/hal+json")
    doc = r.json()
    assert [j["id"] for j in doc["_embedded"]["jobs"]] == [a]
    assert doc["_embedded"]["jobs"][0]["_links"]["self"]["href"].endswith(f"/jobs/{a}")
    assert doc["page"]["totalElements"] == 1
    assert [j["id"] for j in requests.get(f"{jobs.url}/jobs").json()["_embedded"]["jobs"]] == [c]
    r = requests.get(f"{jobs.url}/jobs", params={"status": "failed"}, headers=mine)
    assert r.json()["page"]["totalElements"] == 0
    r = requests.get(f"{jobs.url}/jobs", params={"status": "succeeded"}, headers=mine)
    assert r.json()["page"]["totalElements"] == 1
    assert_problem(requests.get(f"{jobs.url}/jobs", params={"status": "weird"}), 400)


def test_events_metrics_and_ops_endpoints(jobs, rabbit, amqp_exchange):
    tap = EventTap(rabbit.url, amqp_exchange, keys=("job.#",))
    try:
        fx = fixture("small-irv")
        job_id = submit_json(jobs.url, fx["rules"], fx["ballots"]).json()["id"]
        wait_final(jobs.url, job_id)
        ev = tap.wait_for(1)[0]
        assert ev["type"] == "job.succeeded" and ev["subject"] == job_id
        assert ev["data"]["status"] == "succeeded" and ev["data"]["contest"] == "Small example"
    finally:
        tap.close()
    metrics = requests.get(f"{jobs.url}/jobs/metrics").text
    assert 'jobs_total{status="succeeded"} 1' in metrics
    assert "jobs_duration_seconds_bucket" in metrics
    assert requests.get(f"{jobs.url}/jobs/health").json()["status"] == "UP"
    info = requests.get(f"{jobs.url}/jobs/info").json()
    assert info["name"] == "jobs"
    assert SECRET not in requests.get(f"{jobs.url}/jobs/info").text


# ---- who may see a job, the status view's media type, webhook targets ----

def test_a_keyed_job_is_404_for_other_callers_and_anonymous_jobs_stay_readable(jobs, tmp_path):
    """A job submitted with an X-API-Key is visible by id (status, ?view=status, ?wait, logs,
    cancel) only with the same key; anyone else gets the 404 of an unknown id. Jobs
    submitted without a key stay readable by anyone who has the id. The signed result URL
    remains a capability of its own."""
    fx = fixture("small-irv")
    owner, other = {"X-API-Key": "key-one"}, {"X-API-Key": "key-two"}
    mine = submit_json(jobs.url, fx["rules"], fx["ballots"], headers=owner).json()["id"]
    anon = submit_json(jobs.url, fx["rules"], fx["ballots"]).json()["id"]
    url = f"{jobs.url}/jobs/{mine}"
    for headers in (other, {}):
        assert_problem(requests.get(url, headers=headers, allow_redirects=False), 404)
        assert_problem(requests.get(url, params={"view": "status"}, headers=headers), 404)
        t0 = time.monotonic()
        assert_problem(requests.get(url, params={"wait": 5}, headers=headers), 404)
        assert time.monotonic() - t0 < 2  # refused before waiting
        assert_problem(requests.get(f"{url}/logs", headers=headers), 404)
        assert_problem(admin("DELETE", url, headers=headers), 404)
    # the owner's view: it was not cancelled by the refused DELETEs
    r = requests.get(url, params={"wait": 10}, headers=owner, allow_redirects=False)
    while r.status_code == 202:
        r = requests.get(url, params={"wait": 10}, headers=owner, allow_redirects=False)
    assert r.status_code == 303, r.text
    assert requests.get(r.headers["Location"]).content == fx["expected"]  # no key needed
    assert requests.get(f"{url}/logs", headers=owner).status_code == 200
    assert requests.get(url, params={"view": "status"}, headers=owner).json()["status"] == "succeeded"
    # behind the gateway the key becomes X-Consumer-ID: sha256(key), under the gateway's
    # proof; the same owner
    import hashlib
    path = f"/jobs/{mine}"

    def as_gateway(key: bytes) -> dict:
        return harness.proof_headers("GET", path, consumer=hashlib.sha256(key).hexdigest(),
                                     scopes="read vote")
    assert requests.get(url, params={"view": "status"}, headers=as_gateway(b"key-one")).json()["status"] == "succeeded"
    assert_problem(requests.get(url, params={"view": "status"}, headers=as_gateway(b"key-two")), 404)
    # the same header without the proof (anyone on the internal network) is not believed
    forged = {"X-Consumer-ID": hashlib.sha256(b"key-one").hexdigest()}
    assert_problem(requests.get(url, params={"view": "status"}, headers=forged), 404)
    signed_elsewhere = dict(as_gateway(b"key-one"), **{"X-Gateway-Proof": harness.proof(
        "GET", "/jobs", hashlib.sha256(b"key-one").hexdigest(), "read vote")})
    assert_problem(requests.get(url, params={"view": "status"}, headers=signed_elsewhere), 404)
    # an anonymous job: readable with any key and without one
    wait_final(jobs.url, anon)
    for headers in (owner, other, {}):
        r = requests.get(f"{jobs.url}/jobs/{anon}", headers=headers, allow_redirects=False)
        assert r.status_code == 303, (headers, r.status_code)


def test_view_status_honours_accept(jobs):
    fx = fixture("small-irv")
    job_id = submit_json(jobs.url, fx["rules"], fx["ballots"]).json()["id"]
    wait_final(jobs.url, job_id)
    url = f"{jobs.url}/jobs/{job_id}"
    for accept in (None, "application/json", "*/*", "application/*", "APPLICATION/JSON",
                   "text/html, application/json;q=0.9", "text/html;q=1, */*;q=0.1"):
        headers = {"Accept": accept} if accept else {}
        if accept is None:
            headers = {"Accept": ""}  # requests sends */* by default: send none
        r = requests.get(url, params={"view": "status"}, headers=headers)
        assert r.status_code == 200, (accept, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()["status"] == "succeeded"
    for accept in ("text/html", "application/json;q=0", "text/csv, application/json; q=0.0",
                   "application/xml"):
        p = assert_problem(requests.get(url, params={"view": "status"}, headers={"Accept": accept}), 406)
        assert "application/json" in p["detail"]
    # without ?view=status the answer is the state's (303 here) whatever Accept says
    r = requests.get(url, headers={"Accept": "text/html"}, allow_redirects=False)
    assert r.status_code == 303


class _Receiver:
    """A webhook receiver on loopback, recording the bodies it gets."""

    def __init__(self):
        import http.server
        import threading
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_callback_url_default_policy_refuses_internal_targets(service_factory, tmp_path, rabbit, queue):
    """Default JOBS_CALLBACK_ALLOW ("public"): loopback, private, link-local (cloud metadata)
    and other special-purpose addresses are refused with 422 however they are spelled, and
    names are judged by what they resolve to. Nothing is stored or enqueued."""
    svc = service_factory("jobs", env=jobs_env(tmp_path / "work", JOBS_CALLBACK_ALLOW=None))
    fx = fixture("small-irv")
    for target in ("http://127.0.0.1:8084/jobs", "http://localhost/", "http://127.1/",
                   "http://0x7f.0.0.1/", "http://2130706433/", "http://[::1]:8080/",
                   "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://10.1.2.3/hook",
                   "https://172.16.0.1/", "http://192.168.1.10/",
                   "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/",
                   "http://[fd00::1]/", "http://[fe80::1]/", "http://224.0.0.1/",
                   "http://user@127.0.0.1/", "http://no-such-host.invalid/",
                   "ftp://example.org/", "http://", "gopher://127.0.0.1/"):
        r = submit_json(svc.url, fx["rules"], fx["ballots"], callbackUrl=target)
        assert_problem(r, 422, "callbackUrl")
        r = submit_multipart(svc.url, fx["rules"], fx["ballots"], callback=target)
        assert_problem(r, 422, "callbackUrl")
    assert requests.get(f"{svc.url}/jobs").json()["page"]["totalElements"] == 0
    assert queue_depth(rabbit.url, queue("jobs.work")) == 0


def test_callback_url_allow_list(service_factory, tmp_path):
    """JOBS_CALLBACK_ALLOW lists what may be called: an address with its port is allowed
    (and delivered to), the same address on another port is not; a name entry is taken
    on the operator's word; "none" refuses every callback; a malformed list stops the
    service at start."""
    hooks = _Receiver()
    try:
        allow = f"127.0.0.1:{hooks.port}, *.hooks.example, 10.20.0.0/16"
        svc = service_factory("jobs", env=jobs_env(tmp_path / "work", JOBS_CALLBACK_ALLOW=allow))
        fx = fixture("small-irv")
        ok = submit_json(svc.url, fx["rules"], fx["ballots"], callbackUrl=f"http://127.0.0.1:{hooks.port}/h")
        assert ok.status_code == 202, ok.text
        harness.wait_until(lambda: hooks.received, timeout=15, message="the webhook")
        assert json.loads(hooks.received[0])["id"] == ok.json()["id"]
        for target in (f"http://127.0.0.1:{hooks.port + 1 if hooks.port < 65535 else 1}/h",
                       "http://10.21.0.1/", "https://93.184.216.34/", "http://[::1]/"):
            assert_problem(submit_json(svc.url, fx["rules"], fx["ballots"], callbackUrl=target),
                           422, "callbackUrl")
    finally:
        hooks.close()
    # accepted targets that must not really be called by the test: jobs that never finish
    # (a slow program; stopping the service hands them back, no webhook is sent)
    slow = service_factory("jobs", env=jobs_env(
        tmp_path / "work1", JOBS_CALLBACK_ALLOW=allow, JOBS_DRAIN_S=0,
        JOBS_TABULATE_BIN=slow_tabulate(tmp_path / "slow.sh", 60)))
    for target in ("https://a.hooks.example/x", "http://B.Hooks.Example.:8443/", "http://10.20.3.4:9000/"):
        r = submit_json(slow.url, fx["rules"], fx["ballots"], callbackUrl=target)
        assert r.status_code == 202, (target, r.text)
    slow.stop()
    none = service_factory("jobs", env=jobs_env(tmp_path / "work2", JOBS_CALLBACK_ALLOW="none"))
    p = assert_problem(submit_json(none.url, fx["rules"], fx["ballots"],
                                   callbackUrl="https://example.org/"), 422, "callbackUrl")
    assert "disabled" in p["errors"][0]["message"]
    assert submit_json(none.url, fx["rules"], fx["ballots"]).status_code == 202  # no callback: fine
    for bad in ("10.0.0.0/33", "public,none", "exa mple.org", "host:99999", "[::1"):
        run = subprocess.run([str(harness.build_dir() / "jobs" / "voter-jobs")],
                             env={**jobs_env(tmp_path / "work3", JOBS_CALLBACK_ALLOW=bad),
                                  "PATH": "/usr/bin:/bin", "HTTP_PORT": "0",
                                  "MONGODB_URI": "mongodb://127.0.0.1:1"},
                             capture_output=True, text=True, timeout=20)
        assert run.returncode == 2, (bad, run.returncode, run.stderr[-500:])
        assert "JOBS_CALLBACK_ALLOW" in run.stderr, run.stderr
