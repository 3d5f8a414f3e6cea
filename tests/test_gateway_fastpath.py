"""Gateway fast path: a request whose upstream answers quickly is answered without
suspending the client connection — deferred while its upstream send goes out in a batch
with the others of the same libmicrohttpd run (io_uring, the default), or waited for
within the same access-handler call (plain send(), when io_uring is off or unavailable);
everything else falls back to the asynchronous streaming path with nothing lost: slow
upstreams, large bodies, chunked and still-streaming responses, failures that start another
attempt. The outcomes are counted in gateway_fast_path_total{result} on /gateway/metrics.
Every test runs in both send modes."""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import threading
import time

import pytest
import requests

from gateway_upstreams import base_config, gateway, upstreams  # noqa: F401
from harness import wait_until

MODE = {"io_uring": True}


@pytest.fixture(autouse=True, params=[True, False], ids=["io_uring", "plain"])
def send_mode(request):
    MODE["io_uring"] = request.param
    yield request.param


def config(routes, pool=None, **extra):
    # batch "always": batch even one client's requests, so that the batched path is what
    # these tests exercise ("auto", the default, batches only when runs complete several)
    pool = dict({"batch": "always"}, **(pool or {}))
    return base_config(routes, pool=dict(pool, io_uring=MODE["io_uring"]), **extra)


def metric(gw, name) -> int:
    text = requests.get(gw.url + "/gateway/metrics").text
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    assert m, name
    return int(m.group(1))

GENEROUS = {"fast_wait_us": 100000}  # 100 ms: the test upstreams are quick, ASan builds slow


def route(name, prefix, ups, **kw):
    r = {"name": name, "prefix": prefix, "upstreams": [u.address for u in ups],
         "health_path": "/health"}
    r.update(kw)
    return r


def by_result(gw, name) -> dict:
    """The counters of metric name{result="…"} on /gateway/metrics, by result."""
    text = requests.get(gw.url + "/gateway/metrics").text
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r'^%s\{result="(\w+)"\} (\d+)$' % re.escape(name), text, re.M)}


def fast(gw) -> dict:
    return by_result(gw, "gateway_fast_path_total")


def test_quick_answers_skip_suspension_and_keep_every_header(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config(
        [route("r", "/r", [up], rules=[{"methods": ["*"], "auth": "anonymous", "limit": "read"}])],
        tiers={"anonymous": {"read": "1000/1s"}}, pool=GENEROUS))
    s = requests.Session()
    for i in range(20):
        r = s.get(gw.url + f"/r/x?i={i}", headers={"X-Request-ID": f"fast-{i}"})
        assert r.status_code == 200
        info = r.json()
        assert info["upstream"] == up.name and info["path"] == f"/r/x?i={i}"
        assert r.headers["X-Request-ID"] == f"fast-{i}"
        assert info["headers"]["x-request-id"] == f"fast-{i}"
        assert r.headers["RateLimit-Policy"] == '"read";q=1000;w=1'
        assert r.headers["RateLimit"].startswith('"read";r=')
        assert r.headers["X-Upstream"] == up.name
        # hop-by-hop fields (Keep-Alive, and X-Hop named in Connection) stay behind
        assert "Keep-Alive" not in r.headers and "X-Hop" not in r.headers
        assert int(r.headers["Content-Length"]) == len(r.content)
    got = fast(gw)
    # only pooled connections take the fast path: the first request opened one
    assert got["answered"] >= 15, got


def test_slow_upstream_falls_back_and_is_then_skipped(gateway, upstreams):
    slow, quick = upstreams(2, ["slow", "quick"])
    gw = gateway(config([route("s", "/s", [slow], read_timeout_ms=5000),
                              route("q", "/q", [quick])], pool={"fast_wait_us": 20000}))
    s = requests.Session()
    assert s.get(gw.url + "/s/warm").status_code == 200  # pools a connection
    slow.mode, slow.delay = "delay", 0.3
    for i in range(4):
        r = s.get(gw.url + f"/s/{i}")
        assert r.status_code == 200 and r.json()["path"] == f"/s/{i}"
    got = fast(gw)
    assert got["timeout"] >= 1, got
    assert got["skipped"] >= 1, got  # backs off after running out of time

    # while a slow answer is pending, the worker serves others at once
    assert requests.get(gw.url + "/q/warm").status_code == 200
    done = {}

    def slow_call():
        done["slow"] = requests.get(gw.url + "/s/pending").status_code

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    assert requests.get(gw.url + "/q/meanwhile").json()["upstream"] == "quick"
    assert time.monotonic() - t0 < 0.25
    t.join(5)
    assert done["slow"] == 200


def test_large_bodies_stream_and_small_ones_come_whole(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up])], pool=dict(GENEROUS, buffer_bytes=65536)))
    s = requests.Session()
    assert s.get(gw.url + "/r/warm").status_code == 200
    for n in (0, 1000, 65535, 65536, 200_000, 3_000_000):
        r = s.get(gw.url + f"/r/big?n={n}")
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(n)
        assert r.content == b"b" * n, n
    got = fast(gw)
    assert got["streamed"] >= 2, got  # 200 000 and 3 000 000 do not fit the buffer
    assert got["answered"] >= 3, got


def test_chunked_upstream_responses_stay_chunked(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up], read_timeout_ms=5000)],
                             pool={"fast_wait_us": 20000}))
    s = requests.Session()
    assert s.get(gw.url + "/r/warm").status_code == 200
    # complete at once
    r = s.get(gw.url + "/r/stream?n=3000&chunk=1000")
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert r.content == b"x" * 3000
    # still streaming when the wait ends: the rest follows asynchronously
    before = fast(gw)
    r = s.get(gw.url + "/r/stream?n=5000&chunk=1000&pause=0.05")
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert r.content == b"x" * 5000
    after = fast(gw)
    assert after["answered"] == before["answered"], (before, after)


def test_head_and_no_content_keep_their_framing(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up])], pool=GENEROUS))
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    for _ in range(3):  # the same client connection throughout: framing must be exact
        c.request("HEAD", "/r/big?n=5000")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Length") == "5000"
        assert r.read() == b""
        c.request("GET", "/r/status/204")
        r = c.getresponse()
        assert r.status == 204 and r.read() == b""
        c.request("GET", "/r/big?n=10")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"b" * 10
    c.close()


def test_pipelined_requests_are_answered_in_order(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up])], pool=GENEROUS))
    assert requests.get(gw.url + "/r/warm").status_code == 200
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    sock.sendall(b"".join(b"GET /r/p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
    data = b""
    deadline = time.monotonic() + 5
    while data.count(b'"upstream"') < 5 and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    paths = re.findall(rb'"path": "(/r/p\d)"', data)
    assert paths == [b"/r/p%d" % i for i in range(5)], data[:500]


def test_failure_while_waiting_retries_like_before(gateway, upstreams):
    bad, good = upstreams(2, ["bad", "good"])
    gw = gateway(config([route("r", "/r", [bad, good], retries=1)], pool=GENEROUS,
                             ejection={"failures": 1000, "base_ms": 500, "max_ms": 1000}))
    s = requests.Session()
    for i in range(4):  # pooled connections to both
        assert s.get(gw.url + f"/r/warm{i}").status_code == 200
    bad.mode = "reset"
    for i in range(6):
        r = s.get(gw.url + f"/r/idem{i}")
        assert r.status_code == 200 and r.json()["upstream"] == "good"
    assert fast(gw)["retried"] >= 1


def test_disabled_fast_path_proxies_the_same(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up])], pool={"fast_wait_us": 0}))
    s = requests.Session()
    body = b"z" * 5000
    for _ in range(5):
        r = s.post(gw.url + "/r/up", data=body)
        assert r.status_code == 200
        assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        assert s.get(gw.url + "/r/big?n=70000").content == b"b" * 70000
    assert sum(fast(gw).values()) == 0


def test_concurrent_clients_each_get_their_own_answer(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up])], pool=GENEROUS))
    assert metric(gw, "gateway_io_uring_workers") == (1 if MODE["io_uring"] else 0)
    errors = []

    def client(k):
        s = requests.Session()
        try:
            for i in range(25):
                if i % 4 == 0:
                    body = b"%d-%d-" % (k, i) * 50
                    r = s.post(gw.url + f"/r/c{k}/{i}", data=body)
                    if r.json()["body_sha256"] != hashlib.sha256(body).hexdigest():
                        errors.append((k, i, "body"))
                else:
                    r = s.get(gw.url + f"/r/c{k}/{i}?q={k * 1000 + i}",
                              headers={"X-Request-ID": f"c-{k}-{i}"})
                    if r.json()["path"] != f"/r/c{k}/{i}?q={k * 1000 + i}":
                        errors.append((k, i, r.json()["path"]))
                    if r.headers["X-Request-ID"] != f"c-{k}-{i}":
                        errors.append((k, i, r.headers["X-Request-ID"]))
                if r.status_code != 200:
                    errors.append((k, i, r.status_code))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((k, "exception", repr(e)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(up.requests("/r/c")) == 16 * 25
    batched = metric(gw, "gateway_batched_sends_total")
    if MODE["io_uring"]:
        # every request but the first on each upstream connection went out in a batch
        assert batched >= 16 * 25 - up.connections, (batched, up.connections)
        assert metric(gw, "gateway_send_batches_total") <= batched
    else:
        assert batched == 0


def test_auto_batching_leaves_one_client_at_a_time_on_the_direct_path(gateway, upstreams):
    """With batch "auto" (the default), requests that come one at a time are sent at once
    and waited for in the handler (nothing to batch them with); the answers are the same."""
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up])], pool=dict(GENEROUS, batch="auto")))
    s = requests.Session()
    for i in range(20):
        r = s.get(gw.url + f"/r/one{i}")
        assert r.status_code == 200 and r.json()["path"] == f"/r/one{i}"
        body = b"%d" % i * 100
        assert s.post(gw.url + f"/r/post{i}", data=body).json()["body_sha256"] == \
            hashlib.sha256(body).hexdigest()
    assert metric(gw, "gateway_batched_sends_total") == 0
    assert fast(gw)["answered"] >= 30


def test_bad_batch_setting_is_refused(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up])]))
    gw.reload(config([route("r", "/r", [up])], pool={"batch": "sometimes"}))
    wait_until(lambda: "reload refused" in gw.log_text(), timeout=5)
    assert "pool.batch" in gw.log_text()
    assert requests.get(gw.url + "/r/x").status_code == 200


def idle_polls(gw) -> dict:
    return by_result(gw, "gateway_idle_polls_total")


def test_idle_poll_catches_the_next_request_and_backs_off_when_none_comes(gateway, upstreams):
    """After an answer the worker polls for the client's next request before it sleeps
    (pool.idle_poll_us): a client sending at once is caught by the poll; one that pauses is
    not, and then the worker stops polling for a growing number of waits."""
    up, = upstreams(1)
    # 100 ms, the most allowed: a Python client sends its next request well within it, even
    # under ASan (at 50 ms, on two cores running two test suites at once, 13 of 20 were caught)
    gw = gateway(config([route("r", "/r", [up])], pool=dict(GENEROUS, idle_poll_us=100000)))
    s = requests.Session()
    for i in range(20):
        r = s.get(gw.url + f"/r/quick{i}")
        assert r.status_code == 200 and r.json()["path"] == f"/r/quick{i}"
    got = idle_polls(gw)
    assert got["event"] >= 15, got
    before = got
    for i in range(6):
        time.sleep(0.4)  # longer than the poll: it finds nothing
        r = s.get(gw.url + f"/r/slow{i}")
        assert r.status_code == 200 and r.json()["path"] == f"/r/slow{i}"
    got = idle_polls(gw)
    assert got["empty"] - before["empty"] >= 2, got
    assert got["skipped"] - before["skipped"] >= 2, got  # backed off


def test_idle_poll_off_never_polls(gateway, upstreams):
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up])], pool=dict(GENEROUS, idle_poll_us=0)))
    s = requests.Session()
    for i in range(10):
        assert s.get(gw.url + f"/r/{i}").json()["path"] == f"/r/{i}"
    assert idle_polls(gw) == {"event": 0, "empty": 0, "skipped": 0}


def chunked_exchange(port: int, target: str) -> tuple[bytes, bytes, dict]:
    """Sends one HTTP/1.1 GET, reads a chunked response: (head, body, trailer fields)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        more = s.recv(65536)
        assert more, data
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += s.recv(65536)
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        while len(rest) < size + 2:
            rest += s.recv(65536)
        body += rest[:size]
        rest = rest[size + 2:]
    while not (rest.startswith(b"\r\n") or b"\r\n\r\n" in rest):
        rest += s.recv(65536)
    s.close()
    section = b"" if rest.startswith(b"\r\n") else rest.split(b"\r\n\r\n", 1)[0]
    trailers = {}
    for line in section.split(b"\r\n"):
        if line:
            k, v = line.decode().split(":", 1)
            trailers[k.strip().lower()] = v.strip()
    return head, body, trailers


@pytest.mark.parametrize("pause", ["0", "0.05"], ids=["at-once", "streaming"])
def test_trailer_fields_of_a_chunked_response_reach_the_client(gateway, upstreams, pause):
    """A chunked upstream response's trailer fields follow the client's last chunk, less
    those RFC 9110 forbids as trailers or that are hop-by-hop or the gateway's own; they
    never show up in the response head, also when head, body and trailers came in one read."""
    up, = upstreams(1)
    gw = gateway(config([route("r", "/r", [up], read_timeout_ms=5000)], pool=GENEROUS))
    head, body, trailers = chunked_exchange(gw.port, f"/r/stream?n=3000&chunk=1000&trailers=1&pause={pause}")
    assert body == b"x" * 3000
    assert trailers == {"x-checksum": "sha256=" + hashlib.sha256(b"x" * 3000).hexdigest()}, trailers
    assert b"x-checksum" not in head.lower() and b"text/evil" not in head
    assert b"content-type: application/octet-stream" in head.lower()
    # without trailers: none (and the same connection handling as ever)
    head, body, trailers = chunked_exchange(gw.port, f"/r/stream?n=10&chunk=5&pause={pause}")
    assert body == b"x" * 10 and trailers == {}
