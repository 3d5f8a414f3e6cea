"""Gateway: reload under load, drain, malformed and hostile clients, command line."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import requests

from gateway_upstreams import base_config, gateway, raw_request, upstreams  # noqa: F401
from harness import binary, wait_until


def route(name, prefix, ups, **kw):
    r = {"name": name, "prefix": prefix, "upstreams": [u.address for u in ups], "health_path": "/health"}
    r.update(kw)
    return r


def load(url_paths, stop, results, lock):
    """Keep-alive client loop: records (status or exception name) for every request."""
    conn = None
    i = 0
    while not stop.is_set():
        host, port, path = url_paths[i % len(url_paths)]
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            outcome = resp.status
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as exc:  # noqa: BLE001 - every failure counts
            outcome = type(exc).__name__
            conn = None
        with lock:
            results.append(outcome)
    if conn:
        conn.close()


def test_sighup_under_load_fails_no_request(gateway, upstreams):
    a, b, c = upstreams(3, ["a", "b", "c"])
    cfg = base_config([route("r", "/r", [a, b]), route("s", "/s", [a])], **{"listen": {"host": "127.0.0.1", "port": 0, "threads": 2}})
    gw = gateway(cfg)
    stop = threading.Event()
    results: list = []
    lock = threading.Lock()
    targets = [("127.0.0.1", gw.port, "/r/x"), ("127.0.0.1", gw.port, "/s/y")]
    threads = [threading.Thread(target=load, args=(targets, stop, results, lock)) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for i in range(10):
            # alternate between two route tables; /r and /s exist in both
            if i % 2 == 0:
                new = base_config([route("r", "/r", [b, c]), route("s", "/s", [c]), route("t", "/t", [a])],
                                  listen=cfg["listen"])
            else:
                new = cfg
            gw.reload(new)
            time.sleep(0.25)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    failures = [r for r in results if r != 200]
    assert len(results) > 200, len(results)
    assert failures == [], f"{len(failures)} failed of {len(results)}: {failures[:10]}"
    assert gw.log_text().count("configuration reloaded") == 10
    assert c.requests(), "the new configuration was used"
    assert requests.get(gw.url + "/t/z").status_code in (200, 404)


def test_invalid_reload_keeps_the_running_configuration(gateway, upstreams):
    a, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [a])]))
    gw.reload(text='{"routes": [ {"prefix": "no-slash"} ]')
    wait_until(lambda: "reload refused" in gw.log_text(), timeout=5)
    assert requests.get(gw.url + "/r/x").status_code == 200
    assert 'gateway_config_reloads_total{result="error"} 1' in requests.get(gw.url + "/gateway/metrics").text


def test_sigterm_drains_running_requests(gateway, upstreams):
    slow, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [slow], read_timeout_ms=5000)]))
    out = {}

    def slow_request():
        out["r"] = requests.get(gw.url + "/r/slowhead?s=1.0", timeout=10)

    t = threading.Thread(target=slow_request)
    t.start()
    wait_until(lambda: slow.requests("/r/slowhead"), timeout=5)
    t0 = time.monotonic()
    os.kill(gw.svc.pid, signal.SIGTERM)
    time.sleep(0.2)
    # no new connections are accepted while draining
    refused = False
    try:
        requests.get(gw.url + "/r/x", timeout=2)
    except requests.exceptions.ConnectionError:
        refused = True
    assert refused
    t.join(timeout=10)
    assert out["r"].status_code == 200, "the running request finished"
    assert out["r"].headers.get("Connection") == "close"
    wait_until(lambda: not gw.svc.running, timeout=10)
    assert time.monotonic() - t0 < 5
    assert gw.svc._proc.returncode == 0 if gw.svc._proc else True


def test_malformed_requests_get_400_and_gateway_keeps_serving(gateway, upstreams):
    a, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [a])]))
    bad = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /r/x HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /r/x HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
        b"GET /r/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /r/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"GET http://evil.example/r/x HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x01\x02\xff\r\n\r\n",
        b"GET /r/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for data in bad:
        out = raw_request(gw.port, data, read_timeout=3, shut=True)
        status = out.split(b" ", 2)[1] if out.startswith(b"HTTP/1.") else b""
        assert out == b"" or status.startswith(b"4") or status == b"505", (data, out[:120])
    assert requests.get(gw.url + "/r/ok").status_code == 200


def test_huge_headers_are_refused(gateway, upstreams):
    a, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [a])], max_header_bytes=8192))
    big = b"GET /r/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    out = raw_request(gw.port, big, read_timeout=3)
    assert out == b"" or out.split(b" ")[1] in (b"400", b"413", b"431"), out[:100]
    many = b"GET /r/x HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n"
    out = raw_request(gw.port, many, read_timeout=3)
    assert out == b"" or out.split(b" ")[1] in (b"400", b"413", b"431"), out[:100]
    assert a.requests("/r/x") == []
    assert requests.get(gw.url + "/r/ok").status_code == 200


def test_default_header_limit_is_8_kib(gateway, upstreams):
    """Without max_header_bytes a request head of up to 8 KiB (Tomcat's default, which the
    Spring Boot original had) goes through whole; a larger one is refused with 431 and never
    reaches the upstream; the connection pool zeroed per request stays small."""
    a, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [a])]))
    fits = "v" * 7000
    r = requests.get(gw.url + "/r/fits", headers={"X-Big": fits})
    assert r.status_code == 200
    got, = a.requests("/r/fits")
    assert got.headers["x-big"] == fits
    out = raw_request(gw.port, b"GET /r/big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n",
                      read_timeout=3)
    assert out.split(b" ")[1] == b"431", out[:100]
    assert a.requests("/r/big") == []
    assert requests.get(gw.url + "/r/ok").status_code == 200


def test_slowloris_does_not_starve_others(gateway, upstreams):
    a, = upstreams(1)
    cfg = base_config([route("r", "/r", [a])])
    cfg["client_timeout_s"] = 2
    gw = gateway(cfg)
    slow = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"GET /r/x HTTP/1.1\r\nHost: x\r\n")  # never finished
        slow.append(s)
    try:
        t0 = time.monotonic()
        with requests.Session() as sess:
            for _ in range(20):
                assert sess.get(gw.url + "/r/ok", timeout=5).status_code == 200
        assert time.monotonic() - t0 < 5
        # the stalled connections are closed after client_timeout_s of silence
        time.sleep(3)
        closed = 0
        for s in slow:
            s.settimeout(0.5)
            try:
                closed += s.recv(100) == b""
            except ConnectionResetError:
                closed += 1
            except socket.timeout:
                pass
        assert closed == len(slow), closed
    finally:
        for s in slow:
            s.close()
    assert requests.get(gw.url + "/r/ok").status_code == 200
    assert a.requests("/r/x") == []


def test_client_disconnect_mid_response_is_handled(gateway, upstreams):
    a, = upstreams(1)
    gw = gateway(base_config([route("r", "/r", [a])]))
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"GET /r/stream?n=50000000&chunk=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1000)
        s.close()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"GET /r/slowhead?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
    time.sleep(0.5)
    assert requests.get(gw.url + "/r/ok").status_code == 200


def test_help_and_check():
    out = subprocess.run([str(binary("gateway")), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    for word in ("--config", "GATEWAY_CONFIG", "HTTP_PORT", "HTTP_THREADS", "GATEWAY_OPENAPI",
                 "LOG_LEVEL", "SIGHUP", "SIGTERM"):
        assert word in out.stdout, word
    out = subprocess.run([str(binary("gateway")), "--check", "--config", "/nonexistent.json"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "nonexistent" in out.stderr


def test_check_refuses_misspelt_fields_at_every_level(tmp_path):
    """A misspelt key must not silently leave a limit or timeout at its default: unknown
    fields are refused at the top level and inside every section, route and rule."""
    def cfg(**patch):
        c = {"listen": {"host": "127.0.0.1", "port": 0, "threads": 1},
             "pool": {"fast_wait_us": 1000}, "health_check": {"interval_ms": 0},
             "ejection": {"failures": 2}, "cors": {"origins": ["*"]},
             "defaults": {"retries": 1},
             "tiers": {"anonymous": {"read": "10/1s"}},
             "routes": [{"name": "r", "prefix": "/r", "upstreams": ["127.0.0.1:1"],
                         "rules": [{"methods": ["GET"], "auth": "anonymous", "limit": "read",
                                    "$comment": "comments are allowed anywhere"}]}]}
        for path, value in patch.items():
            node = c
            *parents, leaf = path.split("__")
            for k in parents:
                node = node[int(k)] if k.isdigit() else node[k]
            node[leaf] = value
        return c

    def check(c):
        f = tmp_path / "gw.json"
        f.write_text(json.dumps(c))
        return subprocess.run([str(binary("gateway")), "--check", "--config", str(f)],
                              capture_output=True, text=True, timeout=10)

    ok = check(cfg())
    assert ok.returncode == 0, ok.stderr
    for path, where in [("idle_pol_us", "configuration"), ("pool__idle_pol_us", "pool"),
                        ("listen__thread", "listen"), ("health_check__interval", "health_check"),
                        ("ejection__failure", "ejection"), ("cors__origin", "cors"),
                        ("defaults__retry", "defaults"), ("routes__0__max_bdy", "routes[0]"),
                        ("routes__0__rules__0__limits", "routes[0].rules[0]")]:
        out = check(cfg(**{path: 1}))
        leaf = path.split("__")[-1]
        assert out.returncode == 2, (path, out.stderr)
        assert f'{where}: unknown field "{leaf}"' in out.stderr, (path, out.stderr)
    out = check(cfg(pool=[1]))
    assert out.returncode == 2 and "pool: must be an object" in out.stderr, out.stderr
