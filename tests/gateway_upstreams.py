"""Test upstreams for the gateway suites: small HTTP/1.1 servers on real loopback sockets
whose behaviour a test can change at any moment, and which record what they received.

    up = Upstream("a").start()
    up.mode = "reset"          # ok | reset | close | delay | hang
    up.delay = 0.5             # seconds, for mode "delay"
    up.healthy = False         # GET /health answers 503
    up.received                # list of Request (method, path, headers, body)
    up.connections             # TCP connections accepted so far
    up.request_connections     # of those, the ones that carried a request other than /health
    up.stop()

Responses (mode "ok"): JSON describing the request (upstream name, method, path, headers,
body length and sha256) with Content-Length, kept alive. Special paths:
    /health              200 {"status":"UP"} (503 when healthy is False)
    /status/NNN          answers status NNN
    /stream?n=N&chunk=C&pause=S&die=D&trailers=1
                         N bytes, chunked, in C-byte chunks with S seconds between them;
                         with die, the connection is reset once D bytes were sent; with
                         trailers, trailer fields follow the last chunk (X-Checksum and
                         three that a proxy must not pass on)
    /slowhead?s=S        waits S seconds before the response head
    /big?n=N             N bytes with a Content-Length (no body for HEAD)
    /evil/extra          a normal answer followed by a second, unasked-for response
    /evil/dupcl          two Content-Length fields (ambiguous framing)
    /evil/te-cl          Transfer-Encoding: chunked with Content-Length
    /evil/te-identity    Transfer-Encoding: identity (framing by close)
Every request is also kept as received, byte for byte (Request.raw).
Modes apply to every path except /health:
    reset   read the request, then close with RST (SO_LINGER 0) before answering
    close   read the request, then close cleanly without answering
    delay   wait `delay` seconds, then answer normally
    hang    never answer (until stop)

Run as a program (`/usr/bin/python3 tests/gateway_upstreams.py --port N`) it serves mode
"ok" until killed (used by the benchmark as a stand-alone upstream).
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Request:
    method: str
    path: str
    headers: dict  # lower-case name -> value (last one wins)
    header_list: list  # (name, value) as received
    body: bytes = b""
    chunked: bool = False
    trailers: list = field(default_factory=list)  # (name, value) after a chunked body
    raw: bytes = b""  # the request's bytes as received (head and body, chunk framing included)


def _is_health(target: str) -> bool:
    path = urllib.parse.urlsplit(target).path
    return path == "/health" or path.endswith("/health")


@dataclass
class _Conn:
    sock: socket.socket
    buf: bytes = b""


class Upstream:
    def __init__(self, name: str, port: int = 0, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = port
        self.mode = "ok"
        self.delay = 0.0
        self.healthy = True
        self.received: list[Request] = []
        self.health_checks = 0
        self.connections = 0
        self.request_connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: Optional[socket.socket] = None
        self._threads: list[threading.Thread] = []
        self._socks: set = set()

    # ------------------------------------------------------------------ control
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "Upstream":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(512)
        s.settimeout(0.2)
        self.port = s.getsockname()[1]
        self._listener = s
        self._stop.clear()
        t = threading.Thread(target=self._accept_loop, name=f"upstream-{self.name}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        """Stop listening and close every connection (the port becomes free)."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)
        self._threads = []

    def requests(self, path_prefix: str = "") -> list[Request]:
        """Received requests (excluding health checks) whose path starts with path_prefix."""
        with self._lock:
            return [r for r in self.received if r.path.startswith(path_prefix)]

    def reset_counters(self) -> None:
        with self._lock:
            self.received.clear()
            self.connections = 0
            self.request_connections = 0

    # ------------------------------------------------------------------ serving
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self.connections += 1
                self._socks.add(sock)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        counted = False
        try:
            sock.settimeout(None)
            while not self._stop.is_set():
                req = self._read_request(conn)
                if req is None:
                    return
                if not counted and not _is_health(req.path):
                    counted = True
                    with self._lock:
                        self.request_connections += 1
                if not self._answer(conn, req):
                    return
        except OSError:
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _recv(self, conn: _Conn) -> bool:
        data = conn.sock.recv(65536)
        if not data:
            return False
        conn.buf += data
        return True

    def _read_line(self, conn: _Conn) -> Optional[bytes]:
        while b"\r\n" not in conn.buf:
            if not self._recv(conn):
                return None
        line, conn.buf = conn.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, conn: _Conn, n: int) -> Optional[bytes]:
        while len(conn.buf) < n:
            if not self._recv(conn):
                return None
        data, conn.buf = conn.buf[:n], conn.buf[n:]
        return data

    def _read_request(self, conn: _Conn) -> Optional[Request]:
        while b"\r\n\r\n" not in conn.buf:
            if not self._recv(conn):
                return None
        head, conn.buf = conn.buf.split(b"\r\n\r\n", 1)
        raw = head + b"\r\n\r\n"
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        header_list = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            header_list.append((name.strip(), value.strip()))
        headers = {k.lower(): v for k, v in header_list}
        body = b""
        trailers: list = []
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if chunked:
            while True:
                size_line = self._read_line(conn)
                if size_line is None:
                    return None
                raw += size_line + b"\r\n"
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    # trailer fields until an empty line
                    while True:
                        t = self._read_line(conn)
                        if t is None:
                            return None
                        raw += t + b"\r\n"
                        if t == b"":
                            break
                        name, _, value = t.decode("latin-1").partition(":")
                        trailers.append((name.strip(), value.strip()))
                    break
                chunk = self._read_exact(conn, size + 2)
                if chunk is None:
                    return None
                raw += chunk
                body += chunk[:-2]
        elif "content-length" in headers:
            body = self._read_exact(conn, int(headers["content-length"]))
            if body is None:
                return None
            raw += body
        return Request(method, path, headers, header_list, body, chunked, trailers, raw)

    def _send(self, conn: _Conn, status: int, body: bytes, headers: Optional[dict] = None,
              ctype: str = "application/json") -> None:
        reason = {200: "OK", 201: "Created", 204: "No Content", 404: "Not Found",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Status")
        lines = [f"HTTP/1.1 {status} {reason}", f"X-Upstream: {self.name}"]
        if status not in (204, 304):
            lines += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        conn.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _answer(self, conn: _Conn, req: Request) -> bool:
        url = urllib.parse.urlsplit(req.path)
        if _is_health(req.path):
            with self._lock:
                self.health_checks += 1
            if self.healthy and self.mode not in ("reset", "close", "hang"):
                self._send(conn, 200, b'{"status":"UP"}')
            else:
                self._send(conn, 503, b'{"status":"DOWN"}')
            return req.headers.get("connection", "").lower() != "close"
        with self._lock:
            self.received.append(req)
        mode = self.mode
        if mode == "reset":
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.sock.close()
            return False
        if mode == "close":
            conn.sock.shutdown(socket.SHUT_RDWR)
            return False
        if mode == "hang":
            while not self._stop.is_set():
                time.sleep(0.05)
            return False
        if mode == "delay":
            time.sleep(self.delay)
        query = dict(urllib.parse.parse_qsl(url.query))
        if "/status/" in url.path:
            code = int(url.path.rsplit("/", 1)[1])
            self._send(conn, code, b"" if code in (204, 304) else b'{"status":"as asked"}')
            return True
        if "/evil/" in url.path:
            kind = url.path.rsplit("/", 1)[1]
            body = b'{"evil":true}'
            frames = {
                "extra": f"Content-Length: {len(body)}\r\n\r\n".encode() + body +
                         b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nX-Poison: 1\r\n\r\npoisoned!",
                "dupcl": f"Content-Length: {len(body)}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body,
                "te-cl": f"Transfer-Encoding: chunked\r\nContent-Length: {len(body)}\r\n\r\n".encode() +
                         f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n",
                "te-identity": b"Transfer-Encoding: identity\r\n\r\n" + body,
            }
            conn.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Upstream: " +
                              self.name.encode() + b"\r\n" + frames[kind])
            return kind == "extra"
        if url.path.endswith("/slowhead"):
            time.sleep(float(query.get("s", "1")))
        if url.path.endswith("/big"):
            n = int(query.get("n", "100000"))
            head = (f"HTTP/1.1 200 OK\r\nX-Upstream: {self.name}\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n")
            conn.sock.sendall(head.encode("latin-1") + (b"" if req.method == "HEAD" else b"b" * n))
            return True
        if url.path.endswith("/stream"):
            n = int(query.get("n", "1000"))
            chunk = int(query.get("chunk", "1000"))
            pause = float(query.get("pause", "0"))
            conn.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                              b"Transfer-Encoding: chunked\r\nX-Upstream: " +
                              self.name.encode() + b"\r\n\r\n")
            die = int(query.get("die", "-1"))
            sent = 0
            while sent < n:
                k = min(chunk, n - sent)
                conn.sock.sendall(b"%x\r\n" % k + b"x" * k + b"\r\n")
                sent += k
                if 0 <= die <= sent:  # reset in the middle of the body
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.sock.close()
                    return False
                if pause:
                    time.sleep(pause)
            trailers = b""
            if query.get("trailers"):  # a checksum a client may use, and fields that must not pass
                trailers = (b"X-Checksum: sha256=" + hashlib.sha256(b"x" * n).hexdigest().encode() +
                            b"\r\nContent-Type: text/evil\r\nX-Request-ID: forged\r\n"
                            b"Connection: close\r\n")
            conn.sock.sendall(b"0\r\n" + trailers + b"\r\n")
            return True
        info = {
            "upstream": self.name,
            "method": req.method,
            "path": req.path,
            "headers": req.headers,
            "header_names": [k for k, _ in req.header_list],
            "body_length": len(req.body),
            "body_sha256": hashlib.sha256(req.body).hexdigest(),
            "chunked": req.chunked,
        }
        self._send(conn, 200, json.dumps(info).encode(),
                   {"X-Request-ID": req.headers.get("x-request-id", ""),
                    "Keep-Alive": "timeout=60", "X-Hop": "1", "Connection": "X-Hop"})
        return True


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="bench")
    args = ap.parse_args(argv)
    up = Upstream(args.name, args.port).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# --------------------------------------------------------------------------- gateway fixtures
#
# Imported by the tests/test_gateway*.py suites:
#     from gateway_upstreams import upstreams, gateway  # noqa: F401 (pytest fixtures)
# `upstreams(n)` starts n test upstreams (stopped at teardown); `gateway(config)` writes the
# configuration to a file, starts voter-gateway on a free port and waits for
# /gateway/health. At teardown the gateway gets SIGTERM and the test fails if it did not
# exit 0 or left a sanitizer report in its log.

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


class Gateway:
    def __init__(self, svc: "harness.Service", config_path: Path, config: dict) -> None:
        self.svc = svc
        self.config_path = config_path
        self.config = config

    @property
    def url(self) -> str:
        return self.svc.url

    @property
    def port(self) -> int:
        return self.svc.port

    def reload(self, config: Optional[dict] = None, text: Optional[str] = None) -> None:
        """Rewrite the configuration file (atomically) and send SIGHUP."""
        if config is not None:
            self.config = config
            text = json.dumps(config, indent=2)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)
        os.kill(self.svc.pid, 1)  # SIGHUP

    def access_lines(self) -> list[dict]:
        out = []
        for line in self.svc.log_lines():
            if '"msg":"access"' in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def log_text(self) -> str:
        return "\n".join(self.svc.log_lines())


def base_config(routes: list, **extra) -> dict:
    """A small configuration for tests: one worker thread (deterministic round-robin),
    fast health checks, the given routes."""
    cfg = {
        "listen": {"host": "127.0.0.1", "port": 0, "threads": 1},
        "client_timeout_s": 5,
        "drain_timeout_s": 5,
        "health_check": {"interval_ms": 200, "timeout_ms": 300},
        "ejection": {"failures": 2, "base_ms": 500, "max_ms": 4000},
        "routes": routes,
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def upstreams():
    started: list[Upstream] = []

    def make(n: int = 1, names: Optional[list] = None) -> list:
        out = []
        for i in range(n):
            up = Upstream(names[i] if names else f"u{len(started)}").start()
            started.append(up)
            out.append(up)
        return out

    yield make
    for up in started:
        up.stop()


@pytest.fixture
def gateway(request, tmp_path):
    started: list[Gateway] = []
    request.node._voter_services = []

    def start(config: Optional[dict], env: Optional[dict] = None, wait: bool = True,
              config_path: Optional[Path] = None, program: Optional[Path] = None) -> Gateway:
        """config: written to a temporary file; or config=None and config_path=FILE.
        program: an executable run instead of the gateway binary (a wrapper that execs it,
        given the binary's path in VOTER_GATEWAY_BINARY)."""
        port = harness.free_port()
        path = config_path or tmp_path / f"gateway-{len(started)}.json"
        if config is not None:
            path.write_text(json.dumps(config, indent=2))
        full_env = {"HTTP_PORT": str(port), "GATEWAY_CONFIG": str(path), "LOG_LEVEL": "info",
                    "VOTER_GATEWAY_BINARY": str(harness.binary("gateway")),
                    "GATEWAY_PROOF_SECRET": harness.PROOF_SECRET}
        full_env.update(env or {})
        svc = harness.Service("gateway", program or harness.binary("gateway"), full_env,
                              "/gateway/health",
                              tmp_path / f"gateway-{len(started)}.log")
        request.node._voter_services.append(svc)
        gw = Gateway(svc, path, config)
        started.append(gw)
        svc.start()
        if wait:
            svc.wait_ready(timeout=20)
        return gw

    yield start
    problems = []
    for gw in started:
        was_running = gw.svc.running
        try:
            code = gw.svc.stop(grace=15)
        except harness.HarnessError as exc:
            problems.append(str(exc))
            code = None
        if was_running and code not in (0, None):
            problems.append(f"gateway exited with {code} after SIGTERM:\n{gw.svc.log_tail()}")
        report = gw.svc.sanitizer_report()
        if report:
            problems.append(f"sanitizer report in {gw.svc.log_path}:\n{report}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def raw_request(port: int, data: bytes, read_timeout: float = 5.0, shut: bool = False) -> bytes:
    """Send raw bytes on a fresh connection and return everything read until close or
    timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()
