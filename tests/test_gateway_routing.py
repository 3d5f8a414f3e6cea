"""Gateway: routing, rewrite, round-robin, forwarded headers, request ids, streaming,
local endpoints and CORS. Real sockets: voter-gateway in front of test upstreams
(tests/gateway_upstreams.py)."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time

import requests

from gateway_upstreams import base_config, gateway, raw_request, upstreams  # noqa: F401
from harness import wait_until


def route(name, prefix, ups, **kw):
    r = {"name": name, "prefix": prefix, "upstreams": [u.address for u in ups],
         "health_path": "/health"}
    r.update(kw)
    return r


def test_prefix_matches_whole_segments_only(gateway, upstreams):
    voter, election = upstreams(2, ["voter", "election"])
    gw = gateway(base_config([route("voter", "/voter", [voter]),
                              route("election", "/election", [election])]))
    assert requests.get(gw.url + "/voter").json()["upstream"] == "voter"
    # the normalised path goes upstream (shared/include/voter/path.h): no trailing slash
    assert requests.get(gw.url + "/voter/").json()["path"] == "/voter"
    assert requests.get(gw.url + "/voter/abc?x=1&y=%20").json()["path"] == "/voter/abc?x=1&y=%20"
    assert requests.get(gw.url + "/election/e1").json()["upstream"] == "election"
    r = requests.get(gw.url + "/voterX")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["status"] == 404
    assert requests.get(gw.url + "/vote").status_code == 404
    assert requests.get(gw.url + "/nothing/voter").status_code == 404
    assert len(voter.requests("/voterX")) == 0


def test_longest_prefix_wins(gateway, upstreams):
    general, special = upstreams(2, ["general", "special"])
    gw = gateway(base_config([route("jobs", "/jobs", [general]),
                              route("jobs-admin", "/jobs/admin", [special])]))
    assert requests.get(gw.url + "/jobs/1").json()["upstream"] == "general"
    assert requests.get(gw.url + "/jobs/admin/x").json()["upstream"] == "special"
    assert requests.get(gw.url + "/jobs/adminx").json()["upstream"] == "general"


def test_rewrite_strips_v1_prefix(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("v1", "/v1", [up], rewrite=""),
                              route("v1-voter", "/v1/voter", [up], rewrite="/voter"),
                              route("legacy", "/old", [up], rewrite="/new/place")]))
    assert requests.get(gw.url + "/v1/election/7?q=1").json()["path"] == "/election/7?q=1"
    assert requests.get(gw.url + "/v1").json()["path"] == "/"
    assert requests.get(gw.url + "/v1/voter/9").json()["path"] == "/voter/9"
    assert requests.get(gw.url + "/old/x").json()["path"] == "/new/place/x"
    assert requests.get(gw.url + "/v1x").status_code == 404


def test_dot_segments_are_refused(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("a", "/a", [up])]))
    for path in ("/a/../b", "/a/./x", "/a/%2e%2e/b", "/a/.%2E"):
        out = raw_request(gw.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 400"), (path, out[:100])
    assert up.requests() == []


def test_round_robin_over_replicas(gateway, upstreams):
    ups = upstreams(3)
    gw = gateway(base_config([route("r", "/r", ups)]))
    seen = [requests.get(gw.url + "/r/x").json()["upstream"] for _ in range(9)]
    assert sorted(set(seen)) == sorted(u.name for u in ups)
    for u in ups:
        assert seen.count(u.name) == 3
    # consecutive requests never hit the same replica twice in a row
    assert all(a != b for a, b in zip(seen, seen[1:]))


def test_forwarded_headers_and_hop_by_hop(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])]))
    r = requests.get(gw.url + "/r/h", headers={
        "X-Forwarded-For": "203.0.113.9", "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "drop me", "Keep-Alive": "timeout=5", "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==", "X-Custom": "kept", "Host": "api.example.org"})
    seen = r.json()["headers"]
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    # the client's Host is not a public host of this gateway: its own address is used
    assert seen["x-forwarded-host"] == f"127.0.0.1:{gw.port}" and seen["host"] == f"127.0.0.1:{gw.port}"
    assert seen["x-custom"] == "kept"
    for hop in ("x-secret-hop", "keep-alive", "te", "proxy-authorization", "connection"):
        assert hop not in seen, hop
    # upstream hop-by-hop response headers (Keep-Alive, and X-Hop named in Connection) are
    # not passed on
    assert "Keep-Alive" not in r.headers
    assert "X-Hop" not in r.headers
    assert r.headers["X-Upstream"] == up.name


def test_forwarded_host_only_from_the_configured_public_hosts(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])], trusted_proxies=["127.0.0.1/32"],
                             public_hosts=["api.example.org", "voter.example.org:8443"]))
    seen = requests.get(gw.url + "/r/h", headers={"Host": "voter.example.org:8443"}).json()["headers"]
    assert seen["x-forwarded-host"] == "voter.example.org:8443"
    # any other Host, or X-Forwarded-Host even from a trusted proxy, gives the first one
    seen = requests.get(gw.url + "/r/h", headers={"Host": "evil.example"}).json()["headers"]
    assert seen["x-forwarded-host"] == "api.example.org" and seen["host"] == "api.example.org"
    seen = requests.get(gw.url + "/r/h", headers={"X-Forwarded-Host": "evil.example"}).json()["headers"]
    assert seen["x-forwarded-host"] == "api.example.org"
    seen = requests.get(gw.url + "/r/h", headers={"X-Forwarded-Host": "voter.example.org:8443"}).json()["headers"]
    assert seen["x-forwarded-host"] == "voter.example.org:8443"


def test_request_id_preserved_generated_returned_and_logged(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])]))
    r = requests.get(gw.url + "/r/a", headers={"X-Request-ID": "abc-123_x.y"})
    assert r.headers["X-Request-ID"] == "abc-123_x.y"
    assert r.json()["headers"]["x-request-id"] == "abc-123_x.y"
    r2 = requests.get(gw.url + "/r/b")
    rid = r2.headers["X-Request-ID"]
    assert len(rid) == 36 and rid.count("-") == 4
    assert r2.json()["headers"]["x-request-id"] == rid
    # an unsafe id (spaces, quotes) is replaced, not echoed
    r3 = requests.get(gw.url + "/r/c", headers={"X-Request-ID": 'bad "id"'})
    assert r3.headers["X-Request-ID"] != 'bad "id"'

    def line_for(request_id):
        return [entry for entry in gw.access_lines() if entry.get("request_id") == request_id]
    line = wait_until(lambda: line_for("abc-123_x.y"), timeout=5)[0]
    assert line["route"] == "r"
    assert line["method"] == "GET"
    assert line["path"] == "/r/a"
    assert line["status"] == 200
    assert line["upstream"] == up.address
    assert line["upstream_status"] == 200
    assert line["retries"] == 0
    assert line["ratelimit"] == "none"
    assert line["client_ip"] == "127.0.0.1"
    assert line["latency_ms"] >= line["upstream_latency_ms"] >= 0
    assert wait_until(lambda: line_for(rid), timeout=5)


def test_every_request_gets_one_log_line(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])]))
    ids = [f"one-line-{i}" for i in range(20)]
    with requests.Session() as s:
        for i in ids:
            s.get(gw.url + "/r/x", headers={"X-Request-ID": i})
        s.get(gw.url + "/nope", headers={"X-Request-ID": "one-line-404"})
    def counts():
        lines = [e["request_id"] for e in gw.access_lines()]
        return all(lines.count(i) == 1 for i in ids + ["one-line-404"])
    wait_until(counts, timeout=5)


def test_keep_alive_both_sides(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])]))
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    for i in range(20):
        conn.request("GET", f"/r/{i}")
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
        assert resp.getheader("Connection") != "close"
    conn.close()
    # the gateway reused its upstream connection instead of opening one per request
    # (health checks, every 200 ms on their own connections, are not counted: under
    # valgrind the 20 requests take long enough for several)
    assert up.request_connections == 1, (up.request_connections, up.connections)


def test_large_upload_and_download_stream(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up], max_body="20MB")],
                             pool={"buffer_bytes": 65536}))
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB, much larger than the gateway's buffer
    r = requests.post(gw.url + "/r/up", data=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert r.json()["body_length"] == len(body)
    assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    # download: a chunked 30 MB stream arrives whole, chunked to the client too
    r = requests.get(gw.url + "/r/stream?n=30000000&chunk=65536", stream=True)
    assert r.headers.get("Transfer-Encoding") == "chunked"
    total = sum(len(c) for c in r.iter_content(1 << 16))
    assert total == 30_000_000


def test_chunked_upload_is_rechunked_upstream(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])]))

    def gen():
        for i in range(50):
            yield bytes([65 + i % 26]) * 1000

    r = requests.post(gw.url + "/r/chunked", data=gen())
    assert r.status_code == 200
    info = r.json()
    assert info["chunked"] is True
    assert info["body_length"] == 50_000
    assert "transfer-encoding" in info["headers"] and "content-length" not in info["headers"]


def test_trailer_fields_of_a_chunked_upload_reach_the_upstream(gateway, upstreams):
    """The trailer fields a client sends after a chunked body go upstream after the last
    chunk, less those RFC 9110 forbids as trailers, hop-by-hop ones and the gateway's own
    (a trailer cannot stand in for X-Consumer-ID or X-Forwarded-For); none end up in the
    head."""
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])]))
    body = b"x" * 3000
    digest = "sha256=" + hashlib.sha256(body).hexdigest()
    head = b"POST /r/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    trailers = (b"X-Checksum: " + digest.encode() + b"\r\nX-Consumer-ID: forged\r\n"
                b"X-Forwarded-For: 6.6.6.6\r\nContent-Type: text/evil\r\nConnection: x\r\n"
                b"Proxy-Thing: y\r\n")
    resp = raw_request(gw.port, head + b"bb8\r\n" + body + b"\r\n0\r\n" + trailers + b"\r\n")
    assert resp.startswith(b"HTTP/1.1 200"), resp[:300]
    got = up.received[-1]
    assert got.chunked and got.body == body
    assert got.trailers == [("X-Checksum", digest)], got.trailers
    assert "x-checksum" not in got.headers and "x-consumer-id" not in got.headers
    assert got.headers["x-forwarded-for"] == "127.0.0.1"
    assert got.headers.get("content-type") != "text/evil"
    # without trailer fields: the body ends with the empty last chunk, as before
    resp = raw_request(gw.port, head + b"3\r\nabc\r\n0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200"), resp[:300]
    assert up.received[-1].body == b"abc" and up.received[-1].trailers == []


def test_response_streams_before_upstream_finishes(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up], read_timeout_ms=5000)]))
    t0 = time.monotonic()
    r = requests.get(gw.url + "/r/stream?n=5000&chunk=1000&pause=0.4", stream=True)
    it = r.iter_content(1000)
    first = next(it)
    t_first = time.monotonic() - t0
    rest = b"".join(it)
    t_all = time.monotonic() - t0
    assert len(first) + len(rest) == 5000
    assert t_first < 1.0 and t_all > 1.5, (t_first, t_all)


def test_expect_100_continue(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])]))
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"POST /r/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = s.recv(4096)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    s.sendall(b"hello")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    s.close()
    req = up.requests("/r/e")[0]
    assert req.body == b"hello"
    assert "expect" not in req.headers


def test_local_endpoints(gateway, upstreams, tmp_path):
    up, = upstreams(1)
    doc = tmp_path / "openapi.json"
    doc.write_text('{"openapi": "3.1.0", "info": {"title": "Voter API", "version": "1"}}')
    gw = gateway(base_config([route("r", "/r", [up])], openapi=str(doc)))
    r = requests.get(gw.url + "/")
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    assert "/openapi.json" in r.text
    r = requests.get(gw.url + "/openapi.json")
    assert r.status_code == 200 and r.json()["info"]["title"] == "Voter API"
    r = requests.get(gw.url + "/gateway/health")
    assert r.status_code == 200 and r.json()["status"] == "UP"
    assert r.json()["upstreams"][0]["upstream"] == up.address
    requests.get(gw.url + "/r/x")
    r = requests.get(gw.url + "/gateway/metrics")
    assert r.status_code == 200
    assert 'gateway_requests_total{route="r",code="200"}' in r.text
    assert "gateway_request_duration_seconds_bucket" in r.text
    assert f'gateway_upstream_up{{upstream="{up.address}"}} 1' in r.text
    assert requests.post(gw.url + "/gateway/health").status_code == 405
    # a missing document is a 404, not a crash; the reload picks the file up
    doc.unlink()
    cfg = dict(gw.config)
    gw.reload(cfg)
    wait_until(lambda: requests.get(gw.url + "/openapi.json").status_code == 404, timeout=5)


def test_cors_preflight_answered_by_gateway(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])],
                             cors={"origins": ["https://app.example.org"], "max_age_s": 120}))
    r = requests.options(gw.url + "/r/x", headers={
        "Origin": "https://app.example.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in r.headers["Access-Control-Allow-Headers"]
    assert r.headers["Access-Control-Max-Age"] == "120"
    r = requests.options(gw.url + "/r/x", headers={
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403
    assert "Access-Control-Allow-Origin" not in r.headers
    assert up.requests() == []  # preflights never reach the upstream
    r = requests.get(gw.url + "/r/x", headers={"Origin": "https://app.example.org"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
    assert "X-Request-ID" in r.headers["Access-Control-Expose-Headers"]
    r = requests.get(gw.url + "/r/x", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_head_and_no_content(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [up])]))
    r = requests.head(gw.url + "/r/x")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) > 0
    r = requests.get(gw.url + "/r/status/204")
    assert r.status_code == 204 and r.content == b""
    # the connection stays usable after both
    with requests.Session() as s:
        assert s.head(gw.url + "/r/x").status_code == 200
        assert s.get(gw.url + "/r/x").status_code == 200
