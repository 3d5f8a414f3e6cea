"""The service-side fixes of issue 13's item 5, each against the real service:

* a webhook's callbackUrl is checked and connected with one resolution: a trailing dot,
  numeric IPv4 spellings and IPv6 literals are judged by the address they mean, the
  delivery goes to that very address, and redirects are not followed;
* what a job leaves in its directory is read only as a regular file (a symbolic link to a
  file of the service is not followed, neither for the result nor for the logs);
* JOBS_HMAC_SECRET has no default and job ids are not guessable;
* `sort=asc,x` is a precise 400 (the HAL parser no longer reads an uninitialised buffer).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

import harness
from harness import wait_until
from jobs_helpers import fixture, jobs_env, status, submit_json, tabulate_bin


class Receiver:
    """A webhook target on 127.0.0.1; answers `code` (with Location when given)."""

    def __init__(self, code: int = 204, location: str | None = None):
        self.received: list[bytes] = []
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                recv.received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(code)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", harness.free_port()), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def start_jobs(service_factory, tmp_path, **env):
    return service_factory("jobs", env=jobs_env(tmp_path / "work", **env))


def test_callback_urls_are_judged_and_reached_by_the_address_they_mean(service_factory, tmp_path):
    hook = Receiver()
    try:
        # only loopback port hook.port may be called
        svc = start_jobs(service_factory, tmp_path, JOBS_CALLBACK_ALLOW=f"127.0.0.1:{hook.port}",
                         JOBS_WEBHOOK_ATTEMPTS=1)
        fx = fixture("small-irv")
        refused = [f"http://127.0.0.1:{hook.port + 1}/h",      # another port
                   f"http://[::1]:{hook.port}/h",              # another address
                   f"http://[fe80::1%25lo]:{hook.port}/h",     # a zone
                   f"http://10.0.0.1:{hook.port}/h"]
        for url in refused:
            r = submit_json(svc.url, fx["rules"], fx["ballots"], callbackUrl=url)
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "callbackUrl", (url, r.text)
        # every spelling of 127.0.0.1, the trailing dot included, is 127.0.0.1: accepted, and
        # delivered there (the connection is pinned to the address the check saw)
        spellings = [f"http://127.0.0.1.:{hook.port}/h", f"http://0x7f.1:{hook.port}/h",
                     f"http://2130706433:{hook.port}/h", f"http://0177.0.0.1:{hook.port}/h",
                     f"http://[::ffff:127.0.0.1]:{hook.port}/h"]
        ids = []
        for url in spellings:
            r = submit_json(svc.url, fx["rules"], fx["ballots"], callbackUrl=url)
            assert r.status_code == 202, (url, r.text)
            ids.append(r.json()["id"])
        wait_until(lambda: len(hook.received) == len(spellings), timeout=30,
                   message="one delivery per spelling")
        assert sorted(json.loads(b)["id"] for b in hook.received) == sorted(ids)
    finally:
        hook.close()


def test_webhook_redirects_are_not_followed(service_factory, tmp_path):
    target = Receiver()
    redirector = Receiver(code=307, location=f"http://127.0.0.1:{target.port}/stolen")
    try:
        svc = start_jobs(service_factory, tmp_path, JOBS_CALLBACK_ALLOW="127.0.0.0/8",
                         JOBS_WEBHOOK_ATTEMPTS=1)
        fx = fixture("small-irv")
        job = submit_json(svc.url, fx["rules"], fx["ballots"],
                          callbackUrl=f"http://127.0.0.1:{redirector.port}/h").json()["id"]
        st = wait_until(lambda: (lambda s: s if s["webhook"].get("attempts") and
                                 not s["webhook"]["pending"] else None)(
            status(svc.url, job)), timeout=30, message="the webhook tried and given up")
        assert len(redirector.received) == 1
        assert "307" in st["webhook"]["lastError"]
        assert target.received == []
    finally:
        target.close()
        redirector.close()


def test_links_in_the_job_directory_are_not_followed(service_factory, tmp_path):
    """A tabulator that replaces its result and its log with links to a file of the service
    gets a failed job; neither the result nor the logs show that file."""
    secret = tmp_path / "service-secret.txt"
    secret.write_text("TOP-SECRET-OF-THE-SERVICE\n")
    fake = tmp_path / "tabulate-links"
    fake.write_text("#!/bin/sh\n"
                    'dir=$(dirname "$1")\n'
                    f'"{tabulate_bin()}" "$@"\n'
                    'rm -f "$dir/result.json" "$dir/output.log"\n'
                    f'ln -s "{secret}" "$dir/result.json"\n'
                    f'ln -s "{secret}" "$dir/output.log"\n'
                    "exit 0\n")
    fake.chmod(0o755)
    svc = start_jobs(service_factory, tmp_path, JOBS_TABULATE_BIN=fake, JOBS_MAX_ATTEMPTS=1)
    fx = fixture("small-irv")
    job = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    st = wait_until(lambda: (lambda s: s if s["status"] in ("failed", "succeeded") else None)(
        status(svc.url, job)), timeout=30, message="the job ends")
    assert st["status"] == "failed", st
    assert "no result file" in st.get("reason", ""), st
    logs = requests.get(f"{svc.url}/jobs/{job}/logs", timeout=30)
    assert logs.status_code == 200 and "TOP-SECRET" not in logs.text
    assert "TOP-SECRET" not in json.dumps(st)


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_jobs_does_not_start_without_a_proper_hmac_secret(service_factory, tmp_path, secret):
    svc = service_factory("jobs", env=jobs_env(tmp_path / "work", JOBS_HMAC_SECRET=secret),
                          wait=False)
    wait_until(lambda: not svc.running, timeout=30, message="the service refuses to start")
    assert svc.stop() not in (0, None)
    assert any("JOBS_HMAC_SECRET must be set" in line for line in svc.log_lines())


def test_job_ids_are_not_guessable(service_factory, tmp_path):
    svc = start_jobs(service_factory, tmp_path)
    fx = fixture("small-irv")
    ids = [submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"] for _ in range(12)]
    assert len(set(ids)) == 12 and all(len(i) == 24 for i in ids)
    # ObjectIds made in one second by one process share their first 16 hex digits (time and
    # process) and count up in the last 6: random ids share no such prefix
    assert len({i[:8] for i in ids}) == 12, ids
    assert len({i[8:16] for i in ids}) == 12, ids


def test_sort_with_the_direction_first_is_a_precise_400(service_factory):
    svc = service_factory("election")
    for sort, detail in [("asc,x", "invalid sort parameter 'asc,x'"),
                         ("desc,title", "invalid sort parameter 'desc,title'"),
                         ("x,asc", "cannot sort by 'x'"),
                         (",asc", "invalid sort parameter ',asc'")]:
        r = requests.get(f"{svc.url}/election/elections", params={"sort": sort}, timeout=10)
        assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/problem+json")
        assert r.json()["detail"] == detail, (sort, r.json())
