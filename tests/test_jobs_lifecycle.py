"""Job service life cycle with the `local` runner: cancel, deadline, resource limits,
retention, webhooks, and durability when a replica dies (SIGKILL) or stops (SIGTERM)
mid-run.

Long runs use a stand-in for tabulate (jobs_helpers.slow_tabulate): a shell script that
records its pid and process group, sleeps, then execs the real program."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pymongo
import pytest
import requests

import harness
from jobs_helpers import (SECRET, fixture, group_alive, jobs_env, slow_tabulate, status,
                          submit_json, wait_final, wait_status, wrapper_pid)
from harness import admin_request as admin, wait_until


def start_jobs(service_factory, tmp_path, **env):
    work = tmp_path / "work"
    svc = service_factory("jobs", env=jobs_env(work, **env))
    svc.work_dir = work
    return svc


def job_db(mongo, ns):
    return pymongo.MongoClient(mongo.uri)[f"jobs_{ns}"]


def test_cancel_stops_the_running_process_group(service_factory, tmp_path):
    slow = slow_tabulate(tmp_path / "slow.sh", 60)
    svc = start_jobs(service_factory, tmp_path, JOBS_TABULATE_BIN=slow, JOBS_CONCURRENCY=1)
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    pid, pgid = wrapper_pid(svc.work_dir)
    assert harness.pid_alive(pid) and group_alive(pgid)
    running = wait_until(lambda: (lambda d: d if d["progress"]["message"] == "reading" else None)(
        status(svc.url, job_id)), timeout=10, message="progress from the progress file")
    assert running["status"] == "running" and running["attempts"] == 1
    assert running["progress"] == {"done": 5, "total": 10, "message": "reading"}
    r = requests.get(f"{svc.url}/jobs/{job_id}", allow_redirects=False)
    assert r.status_code == 202 and r.json()["progress"]["done"] == 5
    # a second job waits behind it (concurrency 1) and is cancelled before it runs
    queued = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    assert status(svc.url, queued)["status"] == "pending"
    assert admin("DELETE", f"{svc.url}/jobs/{queued}").status_code == 202
    assert status(svc.url, queued)["status"] == "cancelled"

    r = admin("DELETE", f"{svc.url}/jobs/{job_id}")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancelled"
    wait_until(lambda: not group_alive(pgid), timeout=10, message="the job's process group is gone")
    assert not harness.pid_alive(pid)
    doc = wait_until(lambda: (lambda d: d if d.get("exitCode") is not None else None)(
        status(svc.url, job_id)), timeout=10, message="the exit code of the stopped run")
    assert doc["status"] == "cancelled" and doc["reason"] == "cancelled by the client"
    assert doc["exitCode"] == 128 + 15  # SIGTERM reached it
    r = requests.get(f"{svc.url}/jobs/{job_id}", allow_redirects=False)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert "wrapper: sleeping" in requests.get(f"{svc.url}/jobs/{job_id}/logs").text
    assert admin("DELETE", f"{svc.url}/jobs/{job_id}").status_code == 409
    wait_until(lambda: not any(svc.work_dir.glob(f"{job_id}-*")), timeout=5,
               message="the work directory is removed")

    time.sleep(0.5)
    st = status(svc.url, queued)
    assert st["status"] == "cancelled" and st["attempts"] == 0  # never started
    assert not any(svc.work_dir.glob(f"{queued}-*"))


def test_deadline_exceeded_kills_and_fails_with_reason(service_factory, tmp_path):
    slow = slow_tabulate(tmp_path / "slow.sh", 60)
    svc = start_jobs(service_factory, tmp_path, JOBS_TABULATE_BIN=slow, JOBS_DEADLINE_S=2)
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    pid, pgid = wrapper_pid(svc.work_dir)
    r = wait_final(svc.url, job_id, timeout=20)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "failed" and doc["reason"] == "deadline exceeded"
    assert doc["attempts"] == 1  # a deadline is the job's fault: not retried
    assert not group_alive(pgid) and not harness.pid_alive(pid)


LIMITS_SCRIPT = """#!/bin/sh
echo "limits cpu=$(ulimit -t) as=$(ulimit -v) nofile=$(ulimit -n) core=$(ulimit -c)"
echo "env: $(env | sort | tr '\\n' ' ')"
ls /proc/self/fd | tr '\\n' ' '; echo
dir=$(dirname "$1")
echo '{"contest":"limits"}' > "$dir/result.json"
"""


def test_local_runner_applies_resource_limits_and_a_clean_environment(service_factory, tmp_path):
    script = tmp_path / "limits.sh"
    script.write_text(LIMITS_SCRIPT)
    script.chmod(0o755)
    svc = start_jobs(service_factory, tmp_path, JOBS_TABULATE_BIN=script, JOBS_MEMORY_MB=256,
                     JOBS_CPU_S=7, JOBS_NOFILE=32)
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    assert wait_final(svc.url, job_id).status_code == 303
    logs = requests.get(f"{svc.url}/jobs/{job_id}/logs").text
    assert f"limits cpu=7 as={256 * 1024} nofile=32 core=0" in logs, logs
    assert "MONGODB_URI" not in logs and "JOBS_HMAC_SECRET" not in logs and SECRET not in logs
    fds = logs.split("\n")[2].split()
    assert set(fds) <= {"0", "1", "2", "3"}, fds  # no inherited sockets (3: ls's own dir)


def test_retention_purges_then_410(service_factory, tmp_path, mongo, ns):
    svc = start_jobs(service_factory, tmp_path, JOBS_RETENTION_S=2)
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    r = wait_final(svc.url, job_id)
    assert r.status_code == 303
    result_url = r.headers["Location"]
    assert requests.get(result_url).status_code == 200
    db = job_db(mongo, ns)
    assert db.job_data.count_documents({"job": job_id}) == 4  # rules, ballots, result, logs
    wait_until(lambda: requests.get(f"{svc.url}/jobs/{job_id}").status_code == 410, timeout=10,
               message="the job answers 410 after retention")
    assert requests.get(result_url).status_code == 410  # still correctly signed
    assert requests.get(f"{svc.url}/jobs/{job_id}/logs").status_code == 410
    assert admin("DELETE", f"{svc.url}/jobs/{job_id}").status_code == 410
    st = status(svc.url, job_id)
    assert st["status"] == "purged" and st["outcome"] == "succeeded"
    assert db.job_data.count_documents({"job": job_id}) == 0


class Hooks:
    """A webhook receiver on a free loopback port: answers the first `fail` requests 500."""

    def __init__(self, fail: int = 0):
        self.received: list[tuple[dict, bytes]] = []
        self.fail = fail
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = 500 if len(hooks.received) <= hooks.fail else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", harness.free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_delivered_with_valid_signature_after_retries(service_factory, tmp_path):
    hooks = Hooks(fail=2)
    try:
        svc = start_jobs(service_factory, tmp_path)
        fx = fixture("small-irv")
        job_id = submit_json(svc.url, fx["rules"], fx["ballots"], callbackUrl=hooks.url).json()["id"]
        wait_until(lambda: len(hooks.received) >= 3, timeout=20, message="three deliveries")
        for headers, body in hooks.received:
            expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["x-signature"] == f"sha256={expected}"
            assert headers["content-type"] == "application/json"
        attempts = [int(h["x-webhook-attempt"]) for h, _ in hooks.received]
        assert attempts[:3] == [1, 2, 3]
        doc = json.loads(hooks.received[-1][1])
        assert doc["id"] == job_id and doc["status"] == "succeeded"
        assert doc["statusUrl"] == f"{svc.url}/jobs/{job_id}"
        got = requests.get(doc["resultUrl"])
        assert got.status_code == 200 and got.content == fx["expected"]
        st = wait_until(lambda: (lambda s: s if not s["webhook"]["pending"] else None)(
            status(svc.url, job_id)), timeout=5, message="the webhook recorded as delivered")
        assert st["webhook"]["attempts"] == 3 and "deliveredAt" in st["webhook"]
        time.sleep(0.6)
        assert len(hooks.received) == 3  # delivered: no more attempts
    finally:
        hooks.close()


def test_webhook_for_a_failed_job_and_unreachable_target(service_factory, tmp_path):
    hooks = Hooks()
    try:
        svc = start_jobs(service_factory, tmp_path, JOBS_WEBHOOK_ATTEMPTS=2)
        rules = json.loads(fixture("small-irv")["rules"])
        rules["tiebreak"] = "stop"
        ballots = "rank1\nA\nB\n"
        job_id = submit_json(svc.url, rules, ballots, callbackUrl=hooks.url).json()["id"]
        wait_until(lambda: hooks.received, timeout=15, message="the failure webhook")
        doc = json.loads(hooks.received[0][1])
        assert doc["status"] == "failed" and doc["resultUrl"] is None and "reason" in doc
        # a target that refuses connections: retried, then given up and recorded
        dead = f"http://127.0.0.1:{harness.free_port()}/hook"
        other = submit_json(svc.url, rules, ballots, callbackUrl=dead).json()["id"]
        st = wait_until(lambda: (lambda s: s if s["webhook"]["attempts"] == 2 and not s["webhook"]["pending"] else None)(
            status(svc.url, other)), timeout=15, message="the webhook given up after 2 attempts")
        assert st["webhook"]["lastError"]
        assert job_id
    finally:
        hooks.close()


def test_sigkill_mid_run_the_restarted_service_finishes_the_job_exactly_once(
        service_factory, tmp_path, mongo, ns):
    slow = slow_tabulate(tmp_path / "slow.sh", 2)
    svc = start_jobs(service_factory, tmp_path, JOBS_TABULATE_BIN=slow, JOBS_LEASE_S=3)
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    pid, pgid = wrapper_pid(svc.work_dir)
    assert status(svc.url, job_id)["status"] == "running"
    svc.kill()
    # the run does not outlive its worker (PR_SET_PDEATHSIG)
    wait_until(lambda: not harness.pid_alive(pid), timeout=5, message="the orphaned run is killed")
    svc.start()
    svc.wait_ready()
    r = wait_final(svc.url, job_id, timeout=40)
    assert r.status_code == 303, r.text
    assert requests.get(r.headers["Location"]).content == fx["expected"]
    st = status(svc.url, job_id)
    assert st["attempts"] == 2
    db = job_db(mongo, ns)
    assert db.job_data.count_documents({"job": job_id, "_id": {"$regex": r"\.result\."}}) == 1
    doc = db.jobs.find_one({"_id": __import__("bson").ObjectId(job_id)})
    assert doc["status"] == "succeeded" and doc["resultKey"] == f"{job_id}.result.2"
    # the killed run's work directory is swept up
    wait_until(lambda: not (svc.work_dir / f"{job_id}-1").exists(), timeout=20,
               message="the stale work directory is removed")


def test_a_second_replica_takes_over_a_job_whose_worker_died(service_factory, tmp_path, mongo, ns):
    slow = slow_tabulate(tmp_path / "slow.sh", 2)
    a = start_jobs(service_factory, tmp_path, JOBS_TABULATE_BIN=slow, JOBS_LEASE_S=3)
    fx = fixture("small-irv")
    job_id = submit_json(a.url, fx["rules"], fx["ballots"]).json()["id"]
    wrapper_pid(a.work_dir)
    b = service_factory("jobs", env=jobs_env(tmp_path / "work-b", JOBS_TABULATE_BIN=slow,
                                             JOBS_LEASE_S=3))
    a.kill()
    r = wait_final(b.url, job_id, timeout=40)
    assert r.status_code == 303, r.text
    assert requests.get(r.headers["Location"]).content == fx["expected"]
    assert status(b.url, job_id)["attempts"] == 2
    assert job_db(mongo, ns).job_data.count_documents(
        {"job": job_id, "_id": {"$regex": r"\.result\."}}) == 1


def test_a_lost_worker_past_the_attempt_budget_fails_the_job(service_factory, tmp_path):
    slow = slow_tabulate(tmp_path / "slow.sh", 30)
    svc = start_jobs(service_factory, tmp_path, JOBS_TABULATE_BIN=slow, JOBS_LEASE_S=2,
                     JOBS_MAX_ATTEMPTS=1)
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    wrapper_pid(svc.work_dir)
    svc.kill()
    svc.start()
    svc.wait_ready()
    r = wait_final(svc.url, job_id, timeout=20)
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert "attempt budget" in r.json()["reason"]


def test_sigterm_hands_a_running_job_back_without_counting_the_attempt(service_factory, tmp_path):
    slow = slow_tabulate(tmp_path / "slow.sh", 30)
    svc = start_jobs(service_factory, tmp_path, JOBS_TABULATE_BIN=slow, JOBS_DRAIN_S=0)
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    pid, pgid = wrapper_pid(svc.work_dir)
    assert svc.stop() == 0
    assert not group_alive(pgid)
    fast = start_jobs(service_factory, tmp_path / "b")  # the real tabulate
    r = wait_final(fast.url, job_id, timeout=20)
    assert r.status_code == 303
    assert status(fast.url, job_id)["attempts"] == 1
