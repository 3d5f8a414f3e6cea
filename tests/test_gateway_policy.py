"""Gateway: API keys and tiers, rate limits (token buckets, IETF RateLimit fields), client
addresses behind trusted proxies, body limits (413 before the upstream sees anything)."""

from __future__ import annotations

import copy
import json
import socket
import time

import requests

from gateway_upstreams import base_config, gateway, upstreams  # noqa: F401
from harness import repo_root, wait_until

TIERS = {
    "anonymous": {"read": "5/10s"},
    "free": {"read": "100/1s", "submit": "1/2s"},
    "partner": {"read": "100/1s"},
    "paid": {"read": "1000/1s", "submit": "unlimited"},
}
KEYS = {"free-key": "free", "free-key-2": "free", "partner-key": "partner", "paid-key": "paid"}


def jobs_route(up, **kw):
    r = {"name": "jobs", "prefix": "/jobs", "upstreams": [up.address], "health_path": "/health",
         "rules": [
             {"methods": ["GET", "HEAD"], "auth": "anonymous", "limit": "read"},
             {"methods": ["POST"], "auth": "key", "tiers": ["free", "paid"], "limit": "submit"},
             {"methods": ["DELETE"], "auth": "key", "tiers": ["paid"]},
         ]}
    r.update(kw)
    return r


def policy_config(up, **extra):
    extra.setdefault("health_check", {"interval_ms": 0})
    return base_config([jobs_route(up)], tiers=TIERS, keys=KEYS, **extra)


def test_keys_tiers_and_permissions(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(policy_config(up))
    assert requests.get(gw.url + "/jobs/1").status_code == 200  # anonymous read
    r = requests.post(gw.url + "/jobs", json={})
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["title"] == "Unauthorized"
    r = requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "nope"})
    assert r.status_code == 401 and "unknown" in r.json()["detail"]
    # a key, when sent, must be valid even where anonymous access is allowed
    assert requests.get(gw.url + "/jobs/1", headers={"X-API-Key": "nope"}).status_code == 401
    r = requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "partner-key"})
    assert r.status_code == 403 and r.json()["title"] == "Forbidden"
    assert requests.delete(gw.url + "/jobs/1", headers={"X-API-Key": "free-key"}).status_code == 403
    assert up.requests("/jobs") == [r0 for r0 in up.requests("/jobs") if r0.method == "GET"]
    # both header forms carry a key; neither is passed upstream
    r = requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "paid-key"})
    assert r.status_code == 200
    assert "x-api-key" not in r.json()["headers"]
    r = requests.delete(gw.url + "/jobs/1", headers={"Authorization": "Bearer paid-key"})
    assert r.status_code == 200
    assert "authorization" not in r.json()["headers"]
    # other Authorization schemes are not keys and go through untouched
    r = requests.get(gw.url + "/jobs/2", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 200 and r.json()["headers"]["authorization"] == "Basic dXNlcjpwdw=="
    # a method no rule covers
    assert requests.put(gw.url + "/jobs/1", headers={"X-API-Key": "paid-key"}).status_code == 405


def test_upstreams_get_a_consumer_id_instead_of_the_key(gateway, upstreams):
    import hashlib
    up, = upstreams(1)
    gw = gateway(policy_config(up))
    want = hashlib.sha256(b"paid-key").hexdigest()
    for headers in ({"X-API-Key": "paid-key"}, {"Authorization": "Bearer paid-key"}):
        seen = requests.post(gw.url + "/jobs", json={}, headers=headers).json()["headers"]
        assert seen["x-consumer-id"] == want and "x-api-key" not in seen
    # a client cannot claim an identity: its own X-Consumer-ID never reaches the upstream
    seen = requests.get(gw.url + "/jobs/1", headers={"X-Consumer-ID": want}).json()["headers"]
    assert "x-consumer-id" not in seen
    seen = requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "paid-key",
                                                             "X-Consumer-ID": "f" * 64}).json()["headers"]
    assert seen["x-consumer-id"] == want


def test_free_tier_one_submission_per_window(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(policy_config(up))
    r = requests.post(gw.url + "/jobs", json={"n": 1}, headers={"X-API-Key": "free-key"})
    assert r.status_code == 200
    assert r.headers["RateLimit-Policy"] == '"submit";q=1;w=2'
    assert r.headers["RateLimit"] == '"submit";r=0;t=2'
    r = requests.post(gw.url + "/jobs", json={"n": 2}, headers={"X-API-Key": "free-key"})
    assert r.status_code == 429
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["status"] == 429 and r.json()["title"] == "Too Many Requests"
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    assert r.headers["RateLimit-Policy"] == '"submit";q=1;w=2'
    assert r.headers["RateLimit"].startswith('"submit";r=0;t=')
    assert len(up.requests("/jobs")) == 1, "a limited request never reaches the upstream"
    # another key of the same tier has its own bucket
    assert requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "free-key-2"}).status_code == 200
    # paid: unlimited submissions
    for _ in range(15):
        r = requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "paid-key"})
        assert r.status_code == 200 and "RateLimit" not in r.headers
    # the window passes: one more for the free key
    time.sleep(2.1)
    assert requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "free-key"}).status_code == 200
    line = [e for e in gw.access_lines() if e["status"] == 429]
    assert line and line[0]["ratelimit"] == "limited" and line[0]["tier"] == "free"
    assert 'gateway_ratelimited_total{route="jobs",tier="free"} 1' in requests.get(gw.url + "/gateway/metrics").text


def test_reads_limited_per_client_address_with_ratelimit_on_every_response(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(policy_config(up))
    remaining = []
    for _ in range(5):
        r = requests.get(gw.url + "/jobs/x")
        assert r.status_code == 200
        assert r.headers["RateLimit-Policy"] == '"read";q=5;w=10'
        remaining.append(int(r.headers["RateLimit"].split("r=")[1].split(";")[0]))
    assert remaining == [4, 3, 2, 1, 0]
    r = requests.get(gw.url + "/jobs/x")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # X-Forwarded-For is not trusted from an untrusted peer: still the same bucket
    assert requests.get(gw.url + "/jobs/x", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 429
    # a key is its own identity
    assert requests.get(gw.url + "/jobs/x", headers={"X-API-Key": "free-key"}).status_code == 200


def test_forwarded_for_honoured_only_from_trusted_proxies(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(policy_config(up, trusted_proxies=["127.0.0.0/8"]))
    for _ in range(5):
        assert requests.get(gw.url + "/jobs/a", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert requests.get(gw.url + "/jobs/a", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    # another client behind the same proxy has its own bucket; a spoofed left-most entry
    # does not help: the right-most untrusted address is the client
    r = requests.get(gw.url + "/jobs/a", headers={"X-Forwarded-For": "198.51.100.1, 198.51.100.2"})
    assert r.status_code == 200
    r = requests.get(gw.url + "/jobs/a", headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.1"})
    assert r.status_code == 429
    wait_until(lambda: [e for e in gw.access_lines() if e.get("client_ip") == "198.51.100.2"], timeout=5)
    lines = [e for e in gw.access_lines() if e.get("path") == "/jobs/a"]  # once all are written
    assert lines[0]["client_ip"] == "198.51.100.1"


def read_response(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_413_from_content_length_before_the_upstream_sees_anything(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([jobs_route(up, max_body=1000, rules=None)], health_check={"interval_ms": 0}))
    # only the head is sent: the answer comes without waiting for (or asking for) the body
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    resp = read_response(s)
    s.close()
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b"application/problem+json" in resp and b"X-Request-ID" in resp
    assert b"100 Continue" not in resp
    r = requests.post(gw.url + "/jobs", data=b"x" * 5000)
    assert r.status_code == 413 and r.json()["title"] == "Payload Too Large"
    assert up.connections == 0 and up.requests() == [], "the upstream must not see the request"
    # at the limit it passes
    r = requests.post(gw.url + "/jobs", data=b"x" * 1000)
    assert r.status_code == 200 and r.json()["body_length"] == 1000


def test_chunked_upload_gets_413_as_soon_as_the_limit_is_crossed(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([jobs_route(up, max_body=10000, rules=None)], health_check={"interval_ms": 0}))
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 4000 + b"y" * 4000 + b"\r\n"
    s.sendall(chunk * 2)  # 8000: under the limit
    s.settimeout(0.3)
    try:
        early = s.recv(100)
    except socket.timeout:
        early = b""
    assert early == b"", "nothing is answered below the limit"
    s.sendall(chunk)  # 12000: over; the terminating chunk is never sent
    resp = read_response(s)
    s.close()
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b'"status":413' in resp
    time.sleep(0.3)
    assert up.requests() == [], "the upstream never got a complete request"
    # the gateway goes on serving
    r = requests.post(gw.url + "/jobs", data=iter([b"z" * 3000, b"z" * 3000]))
    assert r.status_code == 200 and r.json()["body_length"] == 6000


def example_gateway(gateway, upstreams, tmp_path, secret=None):
    """The example configuration with a keys file of its own (the file ships no keys)."""
    jobs, election = upstreams(2, ["jobs", "election"])
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"t-free": "free", "t-paid": "paid", "t-admin": "admin"}))
    env = {"JOBS_URL": f"http://{jobs.address}", "ELECTION_URL": election.address,
           "CANDIDATE_URL": election.address, "VOTER_URL": election.address,
           "GATEWAY_KEYS_FILE": str(keys)}
    if secret:
        env["GATEWAY_PROOF_SECRET"] = secret
    gw = gateway(None, config_path=repo_root() / "gateway" / "gateway.example.json", env=env)
    return gw, jobs, election


def test_example_config_free_tier_is_one_job_per_5_minutes(gateway, upstreams, tmp_path):
    gw, jobs, election = example_gateway(gateway, upstreams, tmp_path)
    r = requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "t-free"})
    assert r.status_code == 200 and r.json()["upstream"] == "jobs"
    r = requests.post(gw.url + "/v1/jobs", json={}, headers={"X-API-Key": "t-free"})
    assert r.status_code == 429
    assert r.headers["RateLimit-Policy"] == '"submit";q=1;w=300'
    assert 290 <= int(r.headers["Retry-After"]) <= 300
    for _ in range(3):
        assert requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "t-paid"}).status_code == 200
    # body limits: jobs 10 MB, the others 1 MB
    big = b"x" * (2 * 1024 * 1024)
    assert requests.post(gw.url + "/jobs", data=big, headers={"X-API-Key": "t-paid"}).status_code == 200
    assert requests.post(gw.url + "/election", data=big, headers={"X-API-Key": "t-paid"}).status_code == 413
    assert requests.post(gw.url + "/jobs", data=b"x" * (11 * 1024 * 1024),
                         headers={"X-API-Key": "t-paid"}).status_code == 413
    # /v1 rewrite and anonymous reads
    r = requests.get(gw.url + "/v1/election/elections")
    assert r.status_code == 200 and r.json()["path"] == "/election/elections"
    assert r.headers["RateLimit-Policy"] == '"read";q=100;w=1'
    # scopes: anonymous clients read and vote; creating elections needs write (paid), replays
    # need admin
    assert requests.post(gw.url + "/election/elections", json={}).status_code == 401
    assert requests.post(gw.url + "/election/elections", json={}, headers={"X-API-Key": "t-free"}).status_code == 403
    r = requests.post(gw.url + "/election/elections", json={}, headers={"X-API-Key": "t-paid"})
    assert r.status_code == 200 and r.json()["headers"]["x-consumer-scopes"] == "read vote write"
    r = requests.post(gw.url + "/voter/votes", json={})
    assert r.status_code == 200 and r.headers["RateLimit-Policy"] == '"write";q=100;w=1'
    assert r.json()["headers"]["x-consumer-scopes"] == "read vote"
    assert requests.post(gw.url + "/election/events/replay").status_code == 401
    assert requests.post(gw.url + "/candidate/events/replay", headers={"X-API-Key": "t-paid"}).status_code == 403
    r = requests.post(gw.url + "/candidate/events/replay", headers={"X-API-Key": "t-admin"})
    assert r.status_code == 200 and r.json()["headers"]["x-consumer-scopes"] == "read vote write admin"
    # the OpenAPI document is the suite's
    r = requests.get(gw.url + "/openapi.json")
    assert r.status_code == 200 and r.json()["info"]["title"] == "Voter API in C"


def test_keys_file_is_read_at_start_and_on_sighup(gateway, upstreams, tmp_path):
    up, = upstreams(1)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"old-key": "paid"}))
    cfg = policy_config(up, keys_file=str(keys))
    cfg["keys"] = {}
    gw = gateway(cfg)
    assert requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "old-key"}).status_code == 200
    assert requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "new-key"}).status_code == 401
    # rotate: the new key in, the old one out, then SIGHUP
    tmp = tmp_path / "keys.tmp"
    tmp.write_text(json.dumps({"new-key": "paid"}))
    tmp.replace(keys)
    gw.reload(cfg)
    wait_until(lambda: requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "new-key"}).status_code == 200,
               timeout=10)
    assert requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "old-key"}).status_code == 401
    # a broken keys file is refused and the keys in force stay
    keys.write_text(json.dumps({"x": "no-such-tier"}))
    gw.reload(cfg)
    wait_until(lambda: "unknown tier" in gw.log_text(), timeout=10)
    assert requests.post(gw.url + "/jobs", json={}, headers={"X-API-Key": "new-key"}).status_code == 200


def test_a_short_proof_secret_refuses_to_start(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(policy_config(up), env={"GATEWAY_PROOF_SECRET": "too-short"}, wait=False)
    wait_until(lambda: not gw.svc.running, timeout=15)
    assert "GATEWAY_PROOF_SECRET is set but shorter than 16 bytes" in gw.log_text()


def test_upstreams_get_scopes_and_a_proof_they_can_check(gateway, upstreams):
    import hashlib
    import hmac
    up, = upstreams(1)
    secret = "policy-test-secret-0123456789"
    cfg = copy.deepcopy(policy_config(up))
    cfg["tiers"]["paid"]["scopes"] = ["read", "vote", "write", "admin"]
    gw = gateway(cfg, env={"GATEWAY_PROOF_SECRET": secret})
    seen = requests.delete(gw.url + "/jobs//%31", headers={"X-API-Key": "paid-key",
                                                          "X-Consumer-Scopes": "forged",
                                                          "X-Gateway-Proof": "t=1,sig=0"}).json()
    h = seen["headers"]
    assert seen["path"] == "/jobs/1"
    assert h["x-consumer-scopes"] == "read vote write admin"
    t = h["x-gateway-proof"].split(",")[0][2:]
    msg = "\n".join(["DELETE", "/jobs/1", t, hashlib.sha256(b"paid-key").hexdigest(),
                     "read vote write admin"]).encode()
    assert h["x-gateway-proof"] == f"t={t},sig={hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()}"


def test_every_shipped_configuration_has_the_same_scope_model():
    """The example (which tests/test_gateway_hostile.py attacks rule by rule), compose's and
    the Kubernetes dev overlay's configurations: the same tiers with the same scopes, the
    same routes with the same rules (only upstream addresses, hosts and limits' numbers may
    differ), so the hostile suite's verdicts hold for each. The prod overlay brings its own
    (a Secret), written from these."""
    root = repo_root()

    def model(path):
        c = json.loads((root / path).read_text())
        tiers = {name: sorted(t.get("scopes", [])) for name, t in c["tiers"].items()}
        routes = [(r["name"], r["prefix"], r.get("rewrite"), json.dumps(r.get("rules"), sort_keys=True))
                  for r in c["routes"]]
        return tiers, routes, c.get("keys", {})
    example = model("gateway/gateway.example.json")
    for other in ("deploy/gateway/gateway.json", "k8s/overlays/dev/gateway.json"):
        tiers, routes, keys = model(other)
        assert tiers == example[0], other
        assert routes == example[1], other
        assert keys == {}, f"{other} holds keys"
    assert example[2] == {}
    assert example[0]["anonymous"] == ["read", "vote"] and "admin" in example[0]["admin"]
