"""Gateway: retries, timeouts, ejection and re-admission, 502/503/504. Faults are forced
with test upstreams (tests/gateway_upstreams.py) on real loopback sockets."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from gateway_upstreams import Upstream, base_config, gateway, upstreams  # noqa: F401
from harness import free_port, wait_until


def route(name, prefix, addrs, **kw):
    r = {"name": name, "prefix": prefix, "upstreams": addrs, "health_path": "/health"}
    r.update(kw)
    return r


def closed_port() -> str:
    """An address where nothing listens (connection refused)."""
    return f"127.0.0.1:{free_port()}"


def no_ejection(**extra):
    extra.setdefault("ejection", {"failures": 1000, "base_ms": 500, "max_ms": 1000})
    extra.setdefault("health_check", {"interval_ms": 0})
    return extra


def test_get_to_resetting_upstream_is_retried_post_is_not(gateway, upstreams):
    bad, good = upstreams(2, ["bad", "good"])
    bad.mode = "reset"
    gw = gateway(base_config([route("r", "/r", [bad.address, good.address], retries=1)], **no_ejection()))
    # GET (and PUT, DELETE: idempotent) always end on the good replica
    for method in ("GET", "GET", "PUT", "DELETE", "GET", "GET"):
        r = requests.request(method, gw.url + "/r/idem", data=b"x" if method == "PUT" else None)
        assert r.status_code == 200, (method, r.status_code, r.text)
        assert r.json()["upstream"] == "good"
    assert len(bad.requests("/r/idem")) >= 2  # some went to the bad one first ...
    lines = [e for e in gw.access_lines() if e.get("path") == "/r/idem" and e["retries"] == 1]
    assert lines, "retried requests say so in the access log"
    # POST: whenever the bad replica got it, the client gets 502 and the good one nothing
    hit_bad = 0
    for i in range(6):
        b0, g0 = len(bad.requests("/r/post")), len(good.requests("/r/post"))
        r = requests.post(gw.url + "/r/post", json={"i": i})
        b1, g1 = len(bad.requests("/r/post")), len(good.requests("/r/post"))
        if b1 > b0:
            hit_bad += 1
            assert r.status_code == 502, r.text
            assert r.headers["Content-Type"] == "application/problem+json"
            assert r.json()["status"] == 502
            assert g1 == g0, "a POST the upstream may have seen must not be repeated elsewhere"
        else:
            assert r.status_code == 200 and g1 == g0 + 1
    assert hit_bad >= 2


def test_connect_refused_is_retried_even_for_post(gateway, upstreams):
    good, = upstreams(1, ["good"])
    gw = gateway(base_config([route("r", "/r", [closed_port(), good.address], retries=1)], **no_ejection()))
    for i in range(4):
        r = requests.post(gw.url + "/r/p", json={"i": i})
        assert r.status_code == 200 and r.json()["upstream"] == "good"
    assert len(good.requests("/r/p")) == 4  # each exactly once


def test_no_retry_once_the_response_started(gateway, upstreams):
    dying, good = upstreams(2, ["dying", "good"])
    gw = gateway(base_config([route("r", "/r", [dying.address, good.address], retries=1)], **no_ejection()))
    # find a request that lands on the dying replica: the stream is cut after 64 KiB
    got_cut = False
    for _ in range(4):
        g0 = len(good.requests("/r/stream"))
        d0 = len(dying.requests("/r/stream"))
        dying_turn = True
        try:
            r = requests.get(gw.url + "/r/stream?n=2000000&chunk=16384&die=65536", stream=True)
            data = b"".join(r.iter_content(65536))
            dying_turn = len(data) < 2000000
        except requests.exceptions.RequestException:
            pass
        if len(dying.requests("/r/stream")) > d0:
            assert dying_turn, "a cut response must not look complete"
            assert len(good.requests("/r/stream")) == g0, "no retry after the head was sent"
            got_cut = True
    assert got_cut
    line = [e for e in gw.access_lines() if e.get("path", "").startswith("/r/stream") and e.get("error")]
    assert line and line[0]["status"] == 200 and line[0]["retries"] == 0


def test_all_replicas_refusing_gives_502(gateway):
    gw = gateway(base_config([route("r", "/r", [closed_port(), closed_port()], retries=1)], **no_ejection()))
    r = requests.get(gw.url + "/r/x")
    assert r.status_code == 502
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 502 and body["title"] == "Bad Gateway"
    assert body["requestId"] == r.headers["X-Request-ID"]


def test_read_timeout_gives_504_and_post_is_not_retried(gateway, upstreams):
    slow, slow2 = upstreams(2, ["slow", "slow2"])
    slow.mode = slow2.mode = "delay"
    slow.delay = slow2.delay = 2.0
    gw = gateway(base_config([
        route("one", "/one", [slow.address], read_timeout_ms=300, retries=0),
        route("two", "/two", [slow.address, slow2.address], read_timeout_ms=300, retries=1),
    ], **no_ejection()))
    t0 = time.monotonic()
    r = requests.get(gw.url + "/one/x")
    took = time.monotonic() - t0
    assert r.status_code == 504 and r.json()["title"] == "Gateway Timeout"
    assert 0.25 <= took < 1.5, took
    # GET: tried on both replicas (two timeouts), then 504
    t0 = time.monotonic()
    r = requests.get(gw.url + "/two/x")
    took = time.monotonic() - t0
    assert r.status_code == 504 and 0.55 <= took < 2.0, took
    assert len(slow.requests("/two/x")) + len(slow2.requests("/two/x")) == 2
    # POST: one attempt only
    n0 = len(slow.requests("/two/p")) + len(slow2.requests("/two/p"))
    r = requests.post(gw.url + "/two/p", json={})
    assert r.status_code == 504
    time.sleep(0.3)
    assert len(slow.requests("/two/p")) + len(slow2.requests("/two/p")) == n0 + 1


def test_connect_timeout_gives_504(gateway):
    # a listener whose accept queue is full: SYNs are dropped and connect() hangs
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(lsock.getsockname())
        fillers.append(c)
    time.sleep(0.2)
    try:
        addr = f"127.0.0.1:{lsock.getsockname()[1]}"
        gw = gateway(base_config([route("r", "/r", [addr], connect_timeout_ms=200, retries=0)], **no_ejection()))
        t0 = time.monotonic()
        r = requests.get(gw.url + "/r/x", timeout=10)
        took = time.monotonic() - t0
        assert r.status_code == 504, r.text
        assert 0.15 <= took < 2.0, took
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def test_ejection_then_readmission_by_health_check(gateway, upstreams):
    flaky, good = upstreams(2, ["flaky", "good"])
    gw = gateway(base_config([route("r", "/r", [flaky.address, good.address], retries=1)],
                             ejection={"failures": 2, "base_ms": 5000, "max_ms": 20000},
                             health_check={"interval_ms": 200, "timeout_ms": 300}))
    flaky.mode = "reset"
    for _ in range(6):
        assert requests.get(gw.url + "/r/a").status_code == 200  # retried transparently
    wait_until(lambda: 'gateway_upstream_up{upstream="%s"} 0' % flaky.address
               in requests.get(gw.url + "/gateway/metrics").text, timeout=5)
    n = len(flaky.requests())
    for _ in range(10):
        r = requests.get(gw.url + "/r/b")
        assert r.status_code == 200 and r.json()["upstream"] == "good"
    assert len(flaky.requests()) == n, "an ejected replica gets no traffic"
    metrics = requests.get(gw.url + "/gateway/metrics").text
    assert 'gateway_upstream_ejections_total{upstream="%s"}' % flaky.address in metrics
    health = requests.get(gw.url + "/gateway/health").json()
    assert {u["upstream"]: u["up"] for u in health["upstreams"]} == {flaky.address: False, good.address: True}
    # healthy again: the active check re-admits it long before the 5 s ejection ends
    flaky.mode = "ok"
    t0 = time.monotonic()

    def flaky_serves():
        requests.get(gw.url + "/r/c")
        return len(flaky.requests("/r/c")) > 0
    wait_until(flaky_serves, timeout=4)
    assert time.monotonic() - t0 < 4
    assert "upstream re-admitted" in gw.log_text()


def test_ejection_time_grows_while_replica_stays_down(gateway, upstreams):
    down, = upstreams(1, ["down"])
    down.mode = "reset"
    gw = gateway(base_config([route("r", "/r", [down.address], retries=0)],
                             ejection={"failures": 2, "base_ms": 300, "max_ms": 1200},
                             health_check={"interval_ms": 100, "timeout_ms": 200}))

    def ejections():
        import json
        return [json.loads(line)["ejected_ms"] for line in gw.svc.log_lines()
                if '"upstream ejected"' in line]
    # the failing health checks alone eject it, again and again, each time for longer
    got = wait_until(lambda: len(ejections()) >= 4 and ejections(), timeout=8)
    assert got[:4] == [300, 600, 1200, 1200], got
    # while ejected, requests are refused at once with 503 + Retry-After
    r = requests.get(gw.url + "/r/x")
    if r.status_code == 503:
        assert "Retry-After" in r.headers
        assert r.json()["status"] == 503


def test_single_ejected_replica_gives_503_without_contacting_it(gateway, upstreams):
    down, = upstreams(1, ["down"])
    down.mode = "reset"
    gw = gateway(base_config([route("r", "/r", [down.address], retries=0)],
                             ejection={"failures": 2, "base_ms": 10000, "max_ms": 10000},
                             health_check={"interval_ms": 0}))
    assert requests.get(gw.url + "/r/1").status_code == 502
    assert requests.get(gw.url + "/r/2").status_code == 502
    n = len(down.requests())
    r = requests.get(gw.url + "/r/3")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.json()["title"] == "Service Unavailable"
    assert len(down.requests()) == n


def test_upstream_host_name_is_resolved_again(gateway, tmp_path):
    """A host name is looked up again every dns_refresh_ms: when it moves (a compose
    container recreated with a new IP), new requests go to the new address and pooled
    connections to the old one are dropped, with no restart. The gateway runs in its own
    mount namespace with a private /etc/hosts (bind-mounted; nothing on the machine changes)."""
    old = Upstream("old", host="127.0.0.2").start()
    new = Upstream("new", port=old.port, host="127.0.0.3").start()
    try:
        hosts = tmp_path / "hosts"
        hosts.write_text("127.0.0.1 localhost\n127.0.0.2 voter-upstream.test\n")
        wrapper = tmp_path / "gateway-private-hosts"
        wrapper.write_text('#!/bin/sh\nexec unshare --mount sh -c '
                           '\'mount --bind "$0" /etc/hosts && exec "$VOTER_GATEWAY_BINARY"\' '
                           f'"{hosts}"\n')
        wrapper.chmod(0o755)
        gw = gateway(base_config([{"name": "r", "prefix": "/r", "health_path": "/health",
                                   "upstreams": [f"voter-upstream.test:{old.port}"]}],
                                 dns_refresh_ms=200), program=wrapper)
        s = requests.Session()
        for i in range(3):
            assert s.get(gw.url + f"/r/{i}").json()["upstream"] == "old"
        # the name moves; the file is rewritten in place (the bind mount pins the inode)
        with open(hosts, "r+") as f:
            f.truncate(0)
            f.write("127.0.0.1 localhost\n127.0.0.3 voter-upstream.test\n")
        assert wait_until(lambda: s.get(gw.url + "/r/moved").json()["upstream"] == "new",
                          timeout=5, interval=0.05)
        before = len(old.requests("/r/"))
        for i in range(5):  # pooled connections to the old address are not used again
            assert s.get(gw.url + f"/r/after{i}").json()["upstream"] == "new"
        assert len(old.requests("/r/")) == before
        assert "upstream address changed" in gw.log_text()
        # a name that stops resolving keeps the last good address
        with open(hosts, "r+") as f:
            f.truncate(0)
            f.write("127.0.0.1 localhost\n")
        assert wait_until(lambda: "keeping the last address" in gw.log_text(), timeout=5)
        assert s.get(gw.url + "/r/kept").json()["upstream"] == "new"
    finally:
        old.stop()
        new.stop()
