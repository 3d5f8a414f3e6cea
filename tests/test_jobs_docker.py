"""The `docker` runner against this machine's real Docker Engine (its unix socket).

The tabulator image is built locally without a registry by jobs/scripts/tabulator-image
(debootstrap + `docker import` for the debian:bookworm-slim base, then the repository's
tabulator/Dockerfile), cached by a hash of the tabulator sources, so only the first run on
a machine pays for it. Without a reachable engine every test here is skipped, saying why."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
import urllib.parse

import pytest
import requests

from harness import admin_request as admin, repo_root, wait_until
from jobs_helpers import fixture, jobs_env, status, submit_json, wait_final

SOCKET = os.environ.get("JOBS_DOCKER_SOCKET", "/var/run/docker.sock")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("docker", timeout=30)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def docker_api(method: str, path: str, body=None):
    conn = UnixHTTPConnection(SOCKET)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"} if body is not None else {})
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data and data[:1] in b"[{" else data)
    finally:
        conn.close()


def containers_of(job_id: str) -> list[dict]:
    filters = urllib.parse.quote(json.dumps({"label": [f"voter.job={job_id}"]}))
    code, items = docker_api("GET", f"/containers/json?all=1&filters={filters}")
    assert code == 200, items
    return items


@pytest.fixture(scope="module")
def engine():
    try:
        code, _ = docker_api("GET", "/_ping")
    except OSError as exc:
        pytest.skip(f"no Docker engine reachable at {SOCKET}: {exc}")
    if code != 200:
        pytest.skip(f"the Docker engine at {SOCKET} answered /_ping with {code}")
    return SOCKET


@pytest.fixture(scope="module")
def tabulator_image(engine):
    script = repo_root() / "jobs" / "scripts" / "tabulator-image"
    t0 = time.monotonic()
    run = subprocess.run([str(script)], capture_output=True, text=True, timeout=1200)
    if run.returncode != 0:
        pytest.fail(f"building the tabulator image failed:\n{run.stderr[-3000:]}")
    tag = run.stdout.strip().splitlines()[-1]
    print(f"tabulator image {tag} ready in {time.monotonic() - t0:.1f}s")
    return tag


@pytest.fixture(scope="module")
def slow_image(tabulator_image, tmp_path_factory):
    """The tabulator image with an entrypoint that sleeps first (for limits and stops)."""
    ctx = tmp_path_factory.mktemp("slow-image")
    (ctx / "Dockerfile").write_text(
        f"FROM {tabulator_image}\n"
        'ENTRYPOINT ["/bin/sh", "-c", "echo slow: sleeping; sleep 30; exec /usr/local/bin/tabulate \\"$@\\"", "tabulate"]\n')
    tag = tabulator_image.replace("voter-tabulator:", "voter-tabulator-slow:")
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True,
                   timeout=300)
    return tag


def docker_env(tmp_path, image, **extra):
    return jobs_env(tmp_path / "work", JOBS_RUNNER="docker", JOBS_DOCKER_IMAGE=image,
                    JOBS_DOCKER_SOCKET=SOCKET, JOBS_MEMORY_MB=128, JOBS_CPUS="0.5",
                    JOBS_PIDS=32, **extra)


def test_docker_runner_flow_and_container_removed(service_factory, tmp_path, tabulator_image):
    svc = service_factory("jobs", env=docker_env(tmp_path, tabulator_image))
    for name in ("small-irv", "small-batch"):
        fx = fixture(name)
        job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
        r = wait_final(svc.url, job_id, timeout=60)
        assert r.status_code == 303, r.text
        got = requests.get(r.headers["Location"])
        assert got.status_code == 200 and got.content == fx["expected"]
        assert containers_of(job_id) == []  # removed after the run
        assert not any((tmp_path / "work").glob(f"{job_id}-*"))  # work directory too


def test_docker_limits_applied_cancel_and_deadline(service_factory, tmp_path, slow_image):
    svc = service_factory("jobs", env=docker_env(tmp_path, slow_image, JOBS_DEADLINE_S=8))
    fx = fixture("small-irv")
    cancelled = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    timed_out = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]

    found = wait_until(lambda: containers_of(cancelled), timeout=30, message="the job's container")
    # Docker 20.10 lists a container being created before it can inspect it ("No such
    # container" for a few ms): wait for the inspection rather than for the listing alone
    def inspected():
        code, body = docker_api("GET", f"/containers/{found[0]['Id']}/json")
        return body if code == 200 else None

    info = wait_until(inspected, timeout=10, message="the job's container can be inspected")
    host = info["HostConfig"]
    assert host["Memory"] == 128 * 1024 * 1024 and host["MemorySwap"] == 128 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 32
    assert host["NetworkMode"] == "none" and info["Config"]["NetworkDisabled"] is True
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["Binds"] == [f"{tmp_path / 'work'}/{cancelled}-1:/work:rw"]
    assert info["Config"]["Labels"]["voter.job"] == cancelled
    wait_until(lambda: status(svc.url, cancelled)["status"] == "running", timeout=10)

    t0 = time.monotonic()
    assert admin("DELETE", f"{svc.url}/jobs/{cancelled}").status_code == 202
    wait_until(lambda: containers_of(cancelled) == [], timeout=20, message="the container is removed")
    assert time.monotonic() - t0 < 15
    doc = wait_until(lambda: (lambda d: d if d.get("exitCode") is not None else None)(
        status(svc.url, cancelled)), timeout=10)
    assert doc["status"] == "cancelled"
    assert "slow: sleeping" in requests.get(f"{svc.url}/jobs/{cancelled}/logs").text

    r = wait_final(svc.url, timed_out, timeout=40)
    assert r.status_code == 200 and r.json()["reason"] == "deadline exceeded", r.text
    assert containers_of(timed_out) == []


def test_docker_runner_error_is_retried_then_fails(service_factory, tmp_path, engine):
    """An image that does not exist is an infrastructure error: retried within the attempt
    budget, then the job fails saying why."""
    svc = service_factory("jobs", env=docker_env(tmp_path, "voter-tabulator:does-not-exist",
                                                 JOBS_MAX_ATTEMPTS=2))
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    r = wait_final(svc.url, job_id, timeout=30)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "failed" and doc["attempts"] == 2
    assert "runner error" in doc["reason"] and "does-not-exist" in doc["reason"]


def test_docker_sigkill_mid_run_reruns_and_removes_the_old_container(
        service_factory, tmp_path, tabulator_image, tmp_path_factory):
    """A replica killed mid-run leaves its container running; the attempt that takes the
    job over removes it (a job is run by one container at a time) and finishes the job."""
    ctx = tmp_path_factory.mktemp("slow3-image")
    (ctx / "Dockerfile").write_text(
        f"FROM {tabulator_image}\n"
        'ENTRYPOINT ["/bin/sh", "-c", "sleep 3; exec /usr/local/bin/tabulate \\"$@\\"", "tabulate"]\n')
    image = tabulator_image.replace("voter-tabulator:", "voter-tabulator-slow3:")
    subprocess.run(["docker", "build", "-q", "-t", image, str(ctx)], check=True,
                   capture_output=True, timeout=300)
    svc = service_factory("jobs", env=docker_env(tmp_path, image, JOBS_LEASE_S=2))
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    first = wait_until(lambda: containers_of(job_id), timeout=30, message="the first container")
    svc.kill()
    svc.start()
    svc.wait_ready()
    r = wait_final(svc.url, job_id, timeout=60)
    assert r.status_code == 303, r.text
    assert requests.get(r.headers["Location"]).content == fx["expected"]
    assert status(svc.url, job_id)["attempts"] == 2
    assert containers_of(job_id) == []  # the first attempt's container is gone too
    code, _ = docker_api("GET", f"/containers/{first[0]['Id']}/json")
    assert code == 404
