"""docker-compose.yml end to end, on this machine's Docker engine.

Builds the base image without a registry (scripts/docker-base), every service image with
the repository's Dockerfiles (through `docker-compose build`, exactly as users build
them), and two test-only stand-ins for the images that cannot be pulled here (FerretDB
for mongo, Debian's RabbitMQ for rabbitmq: docker-compose.test.yml). Then brings the suite
up under a unique project name with the gateway on a free loopback port, seeds the sample
data through the gateway, checks the 35-vote fixture, propagation of an election update
to the candidate and voter replicas, and a tabulation job through the docker runner, and
tears everything down (containers, networks, volumes), also when a check fails.

Images keep a fixed tag (voter-*:deploy-test), so a second run reuses the build cache and
takes a few minutes less. Without a reachable Docker engine (or docker-compose) every
test is skipped, saying why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import quote, urljoin

import pytest
import requests

import harness
from harness import free_port, repo_root, wait_until

ROOT = repo_root()
TAG = os.environ.get("VOTER_DEPLOY_TEST_TAG", "deploy-test")
SERVICES = ("election", "candidate", "voter", "jobs", "gateway")
STANDIN_MONGO = "voter-test/ferretdb:1.24"
STANDIN_RABBITMQ = "voter-test/rabbitmq:3.10"
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "votes-35.json").read_text())
JOB_FIXTURE = ROOT / "tabulator" / "tests" / "fixtures" / "small-irv"
E2016 = "2016 Presidential Election"


def sh(cmd, timeout=600, check=True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}:\n"
                             f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def log(msg: str) -> None:
    # progress on the real stderr: CTest shows it with --output-on-failure, -s shows it live
    sys.__stderr__.write(f"test_deploy_compose: {msg}\n")
    sys.__stderr__.flush()


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def engine():
    if not shutil.which("docker"):
        pytest.skip("no docker client on this machine")
    r = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"no Docker engine reachable: {r.stderr.strip()[:300]}")
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (Debian's 1.29) is not installed")
    return r.stdout.strip()


@pytest.fixture(scope="module")
def project(engine):
    """Environment and command prefix of this run's compose project."""
    work = Path(tempfile.mkdtemp(prefix="voter-deploy-jobs-"))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    # the .env users make (scripts/secrets compose: .env.example with every secret
    # generated): run with exactly it, plus what a test on a shared machine must change
    # (port, work directory, the socket's group)
    env_file = Path(tempfile.mkdtemp(prefix="voter-deploy-env-")) / "env"
    sh([str(ROOT / "scripts" / "secrets"), "compose", str(env_file)])
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    shutil.rmtree(env_file.parent, ignore_errors=True)
    env.update({
        "DOCKER_BUILDKIT": "0",  # no buildx here; the legacy builder caches layers too
        "COMPOSE_DOCKER_CLI_BUILD": "0",
        "VOTER_TAG": TAG,
        "GATEWAY_BIND": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "JOBS_HOST_WORK_DIR": str(work),
        "DOCKER_GID": str(os.stat(env.get("DOCKER_SOCKET", "/var/run/docker.sock")).st_gid),
        "VOTER_TEST_MONGO_IMAGE": STANDIN_MONGO,
        "VOTER_TEST_RABBITMQ_IMAGE": STANDIN_RABBITMQ,
    })
    name = f"voterdeploy{uuid.uuid4().hex[:8]}"
    cmd = ["docker-compose", "--project-directory", str(ROOT), "-p", name,
           "-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.test.yml")]
    yield {"env": env, "cmd": cmd, "name": name, "work": work,
           "url": f"http://127.0.0.1:{env['GATEWAY_PORT']}",
           "admin": {"X-API-Key": env["GATEWAY_ADMIN_KEY"]},
           "paid": {"X-API-Key": env["GATEWAY_PAID_KEY"]}}
    shutil.rmtree(work, ignore_errors=True)


def image_ids(names) -> dict:
    ids = {}
    for n in names:
        r = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", n], capture_output=True, text=True)
        if r.returncode == 0:
            ids[n] = r.stdout.strip()
    return ids


@pytest.fixture(scope="module")
def images(project):
    """Base, stand-ins and every service image; returns {service: image name}."""
    t0 = time.monotonic()
    sh([str(ROOT / "scripts" / "docker-base")], timeout=900)
    t_base = time.monotonic() - t0

    sh(["docker", "build", "-q", "--force-rm", "-t", STANDIN_RABBITMQ, str(ROOT / "deploy" / "rabbitmq")],
       timeout=900, env=project["env"])
    with tempfile.TemporaryDirectory(prefix="voter-ferretdb-ctx-") as ctx:
        shutil.copy(ROOT / "deploy" / "ferretdb" / "Dockerfile", ctx)
        shutil.copy(harness.ferretdb_binary(), Path(ctx) / "ferretdb")
        sh(["docker", "build", "-q", "--force-rm", "-t", STANDIN_MONGO, ctx], timeout=600, env=project["env"])
    t_standins = time.monotonic() - t0 - t_base

    names = {s: f"voter-{s}:{TAG}" for s in SERVICES + ("tabulator",)}
    before = image_ids(names.values())
    r = sh(project["cmd"] + ["build", "--force-rm"], timeout=1800, check=False, env=project["env"])
    if r.returncode != 0:
        raise AssertionError("docker-compose build failed (the same Dockerfiles users build):\n"
                             + (r.stdout + r.stderr)[-6000:])
    after = image_ids(names.values())
    # an image replaced by this build is unused now: do not let every run leave one behind
    for n, old in before.items():
        if after.get(n) != old:
            subprocess.run(["docker", "rmi", old], capture_output=True)
    log(f"images: base {t_base:.0f}s, stand-ins {t_standins:.0f}s, "
        f"services {time.monotonic() - t0 - t_base - t_standins:.0f}s")
    return names


@pytest.fixture(scope="module")
def suite(request, project, images):
    """The suite up and ready; torn down (down -v) afterwards, whatever happened."""
    env, cmd = project["env"], project["cmd"]
    failed_before = request.session.testsfailed
    broken = True  # until the suite is up
    t0 = time.monotonic()
    try:
        r = sh(cmd + ["up", "-d", "--no-build"], timeout=900, check=False, env=env)
        if r.returncode != 0:
            raise AssertionError(f"docker-compose up failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}\n"
                                 + sh(cmd + ["logs", "--tail=40"], check=False, env=env).stdout[-8000:])
        url = project["url"]

        def gateway_sees_all():
            h = requests.get(f"{url}/gateway/health", timeout=3).json()
            return h["status"] == "UP" and all(u["up"] for u in h["upstreams"])
        wait_until(gateway_sees_all, timeout=120, interval=0.5, message="the gateway and all its upstreams")

        def all_healthy():
            ids = sh(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project['name']}"]).stdout.split()
            states = sh(["docker", "inspect", "-f", "{{.State.Health.Status}}", *ids]).stdout.split()
            return len(states) == 7 and set(states) == {"healthy"}
        wait_until(all_healthy, timeout=120, interval=1, message="every container healthy (its HEALTHCHECK)")
        log(f"up in {time.monotonic() - t0:.0f}s at {url} (project {project['name']})")
        broken = False
        yield project
    finally:
        if broken or request.session.testsfailed > failed_before:
            logs = sh(cmd + ["logs", "--no-color", "--tail=60"], check=False, env=env)
            log("compose logs (tail):\n" + logs.stdout[-12000:])
        t1 = time.monotonic()
        down = sh(cmd + ["down", "-v", "--remove-orphans", "-t", "20"], timeout=300, check=False, env=env)
        left = sh(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project['name']}"],
                  check=False).stdout.split()
        log(f"down in {time.monotonic() - t1:.0f}s (exit {down.returncode}, containers left: {len(left)})")
        assert down.returncode == 0 and not left, f"teardown incomplete: {down.stderr[-2000:]}"


@pytest.fixture(scope="module")
def seeded(suite):
    r = sh(["/usr/bin/python3", str(ROOT / "scripts" / "seed"), "--url", suite["url"],
            "--api-key", suite["admin"]["X-API-Key"]], timeout=300, check=False)
    return r


def container(suite, service: str) -> dict:
    ids = sh(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={suite['name']}",
              "--filter", f"label=com.docker.compose.service={service}"]).stdout.split()
    assert len(ids) == 1, f"one {service} container, found {ids}"
    return json.loads(sh(["docker", "inspect", ids[0]]).stdout)[0]


# --------------------------------------------------------------------------- checks

def test_images_are_small_non_root_and_healthchecked(images):
    base = json.loads(sh(["docker", "image", "inspect", "debian:bookworm-slim"]).stdout)[0]["Size"]
    sizes = {}
    for service in SERVICES:
        img = json.loads(sh(["docker", "image", "inspect", images[service]]).stdout)[0]
        cfg = img["Config"]
        assert cfg["User"] == "10001:10001", service
        assert cfg["Healthcheck"]["Test"][0] == "CMD", service
        sizes[service] = img["Size"]
        # runtime libraries only: no compiler, no -dev packages on top of the base
        assert img["Size"] - base < 80e6, f"{service}: {img['Size'] / 1e6:.0f} MB on a {base / 1e6:.0f} MB base"
    log("image sizes (MB): " + ", ".join(f"{s} {v / 1e6:.0f}" for s, v in sizes.items())
        + f"; base {base / 1e6:.0f}")


def test_only_the_gateway_is_published_and_services_are_locked_down(suite):
    for service in SERVICES + ("mongo", "rabbitmq"):
        c = container(suite, service)
        published = {p: b for p, b in (c["NetworkSettings"]["Ports"] or {}).items() if b}
        if service == "gateway":
            assert list(published) == ["8080/tcp"]
            assert [b["HostIp"] for b in published["8080/tcp"]] == ["127.0.0.1"]
        else:
            assert not published, f"{service} publishes {published}"
        nets = set(c["NetworkSettings"]["Networks"])
        if service in ("mongo", "rabbitmq"):
            assert nets == {f"{suite['name']}_backend"}
        if service in SERVICES:
            assert c["Config"]["User"] == "10001:10001"
            assert c["HostConfig"]["ReadonlyRootfs"] is True
            assert c["HostConfig"]["CapDrop"] == ["ALL"]
            assert c["State"]["Health"]["Status"] == "healthy"
    backend = json.loads(sh(["docker", "network", "inspect", f"{suite['name']}_backend"]).stdout)[0]
    assert backend["Internal"] is True


def test_the_gateway_image_serves_the_web_client(suite):
    page = requests.get(f"{suite['url']}/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'src="/web/js/app.js"' in page.text
    script = requests.get(f"{suite['url']}/web/js/app.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]


def test_gateway_demands_a_key_for_writes(suite):
    r = requests.post(f"{suite['url']}/election/elections", json={"title": "x", "date": "2020-01-01"}, timeout=10)
    assert r.status_code == 401, r.text


def test_admin_operations_need_the_admin_key_and_services_the_gateways_proof(suite):
    url = f"{suite['url']}/voter/drop/votes"
    assert requests.post(url, timeout=10).status_code == 401
    assert requests.post(url, headers=suite["paid"], timeout=10).status_code == 403
    assert requests.post(url, headers=suite["admin"], timeout=30).status_code == 204
    # straight to the service on the compose network, with a key and forged scopes:
    # refused by the service itself (no proof of the gateway's secret)
    r = sh(suite["cmd"] + ["exec", "-T", "gateway", "bash", "-c",
                           "exec 3<>/dev/tcp/voter/8083; "
                           "printf 'POST /voter/drop/votes HTTP/1.1\\r\\nHost: voter\\r\\n"
                           "X-Consumer-Scopes: read vote write admin\\r\\nContent-Length: 0\\r\\n"
                           "Connection: close\\r\\n\\r\\n' >&3; head -c 12 <&3"],
           check=False, env=suite["env"])
    assert r.stdout.startswith("HTTP/1.1 403"), r.stdout + r.stderr


def test_seed_through_the_gateway(seeded):
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert "5 elections created" in seeded.stdout and "17 candidates created" in seeded.stdout


def test_the_35_vote_fixture_through_the_gateway(suite, seeded):
    api = f"{suite['url']}/voter"
    assert requests.post(f"{api}/drop/votes", headers=suite["admin"], timeout=30).status_code == 204
    for v in FIXTURE["votes"]:
        r = requests.post(f"{api}/votes", json=v, headers=suite["paid"], timeout=30)
        assert r.status_code == 201, r.text
    enc = quote(E2016, safe="")
    expect = FIXTURE["expect"]
    results = requests.get(f"{api}/results/{enc}", timeout=30).json()["results"]
    assert results[0] == expect["results_head"]
    assert {r["candidate"]: r["votes"] for r in results} == dict(Counter(v["candidate"] for v in FIXTURE["votes"]))
    assert requests.get(f"{api}/results/{enc}/votes", timeout=30).json() == {"votes": expect["total"]}
    assert requests.get(f"{api}/winners/{enc}", timeout=30).json() == {"results": expect["winners"]}
    assert requests.get(f"{api}/winners/{enc}/votes", timeout=30).json() == {"votes": expect["winners_votes"]}


def test_an_election_update_propagates_to_the_replicas(suite, seeded):
    base = suite["url"]
    title = f"Deployment check {uuid.uuid4().hex[:8]}"
    r = requests.post(f"{base}/election/elections", headers=suite["paid"], timeout=30,
                      json={"title": title, "date": "2030-11-05", "electionType": "LOCAL", "description": "v1"})
    assert r.status_code == 201, r.text
    eid = r.json()["id"]

    def replicas():
        """The election as the candidate and the voter service know it (None: absent)."""
        c = requests.get(f"{base}/candidate/elections/{eid}", timeout=5)
        listing = requests.get(f"{base}/voter/elections", params={"size": 1000}, timeout=5).json()
        v = [e for e in listing["_embedded"]["elections"] if e["id"] == eid]
        return (c.json() if c.status_code == 200 else None), (v[0] if v else None)

    def replicas_show(description):
        return lambda: all(e and e["description"] == description for e in replicas())
    wait_until(replicas_show("v1"), timeout=30, interval=0.2, message="the new election in both replicas")
    r = requests.patch(f"{base}/election/elections/{eid}", json={"description": "v2"}, headers=suite["paid"], timeout=30)
    assert r.status_code == 200, r.text
    wait_until(replicas_show("v2"), timeout=30, interval=0.2, message="the update in both replicas")
    assert all(e["version"] == r.json()["version"] for e in replicas())
    assert requests.delete(f"{base}/election/elections/{eid}", headers=suite["paid"], timeout=30).status_code == 204
    wait_until(lambda: replicas() == (None, None), timeout=30, interval=0.2,
               message="the delete in both replicas")


def test_a_tabulation_job_runs_through_the_docker_runner(suite, images):
    base = suite["url"]
    assert container(suite, "jobs")["Config"]["Env"].count("JOBS_RUNNER=docker") == 1
    since = str(int(time.time()) - 1)
    body = {"rules": json.loads((JOB_FIXTURE / "rules.json").read_text()),
            "ballots": (JOB_FIXTURE / "ballots.csv").read_text()}
    r = requests.post(f"{base}/jobs/tabulations", json=body, headers=suite["paid"], timeout=30)
    assert r.status_code == 202, r.text
    job = r.json()["id"]

    def finished():
        # the job belongs to the key that submitted it (the gateway passes its hash on)
        s = requests.get(f"{base}/jobs/{job}", params={"wait": "10"}, headers=suite["paid"],
                         allow_redirects=False, timeout=30)
        return s if s.status_code != 202 else None
    final = wait_until(finished, timeout=120, interval=0.2, message=f"job {job} to finish")
    assert final.status_code == 303, final.text
    result = requests.get(urljoin(base, final.headers["Location"]), timeout=30)
    assert result.status_code == 200
    assert result.content == (JOB_FIXTURE / "expected.json").read_bytes()
    # it ran in a container of the tabulator image, which is gone again
    events = sh(["docker", "events", "--since", since, "--until", str(int(time.time()) + 1),
                 "--filter", f"label=voter.job={job}", "--format", "{{.Action}} {{.From}}"]).stdout.split("\n")
    actions = [e.split()[0] for e in events if e]
    assert "start" in actions and "destroy" in actions, events
    assert {e.split()[1] for e in events if e} == {images["tabulator"]}
    assert sh(["docker", "ps", "-aq", "--filter", f"label=voter.job={job}"]).stdout.strip() == ""
    assert not list(suite["work"].iterdir()), "the work directory is cleaned up"
