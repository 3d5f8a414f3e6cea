"""Gateway: a hostile client on raw sockets. Every case sends bytes a careful attacker would
send and asserts three things: the status the gateway answers, that the upstream test
servers received exactly what they should (how many requests, and their bytes: method,
normalised path, body, the gateway's own identity fields), and that an ordinary client on a
fresh connection then gets its own answer (its request id comes back from the upstream: no
response was left queued on a pooled connection).

One gateway runs the example configuration (gateway/gateway.example.json: its routes, rules
and scopes; its rate limits are lifted so hundreds of cases from one address are not
throttled, which test_unknown_keys_and_ipv6_clients_are_limited covers on its own), with
four recording upstreams and a keys file of its own. Groups:
  framing      Content-Length/Transfer-Encoding ambiguities and their variants (case,
               whitespace, tabs, duplicates across and within lines), chunk-size overflow,
               chunk extensions, trailers, pipelining, Expect: 100-continue without a body,
               bare CR/LF, obs-fold, NUL and control characters, malformed request lines
  paths        every rule of the example configuration, each in 18 spellings
  destructive  every destructive endpoint as anonymous, free, write (paid) and admin
  forged       X-Consumer-ID / X-Consumer-Scopes / X-Gateway-Proof / X-Forwarded-* / Forwarded
  heads        huge and malformed heads
  upstream     ambiguous response framing (502), a response with extra bytes (not reused)
  slowloris    slow clients while others are served
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

import harness
from gateway_upstreams import Upstream, base_config, gateway, upstreams  # noqa: F401

KEYS = {"h-free": "free", "h-paid": "paid", "h-admin": "admin"}
SECRET = "hostile-suite-proof-secret-0123456789"


# --------------------------------------------------------------------------- the gateway


class Env:
    def __init__(self, svc, ups):
        self.svc = svc
        self.ups = ups  # name -> Upstream
        self.expected = 0  # requests the upstreams should have received so far

    @property
    def port(self) -> int:
        return self.svc.port

    def received(self) -> list:
        out = []
        for up in self.ups.values():
            out += up.requests()
        return out

    def count(self) -> int:
        return sum(len(up.requests()) for up in self.ups.values())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    ups = {name: Upstream(name).start() for name in ("election", "candidate", "voter", "jobs")}
    cfg = json.loads((harness.repo_root() / "gateway" / "gateway.example.json").read_text())
    cfg["listen"]["threads"] = 2
    cfg["client_timeout_s"] = 3
    cfg["health_check"] = {"interval_ms": 0}
    cfg["ejection"] = {"failures": 1000}  # the evil-upstream cases must not eject a replica
    cfg.pop("openapi", None)
    for tier in cfg["tiers"].values():
        for name in list(tier):
            if name != "scopes":
                tier[name] = "unlimited"
    path = tmp / "gateway.json"
    path.write_text(json.dumps(cfg))
    keys = tmp / "keys.json"
    keys.write_text(json.dumps(KEYS))
    port = harness.free_port()
    svc = harness.Service("gateway", harness.binary("gateway"), {
        "HTTP_PORT": str(port), "GATEWAY_CONFIG": str(path), "LOG_LEVEL": "warn",
        "GATEWAY_KEYS_FILE": str(keys), "GATEWAY_PROOF_SECRET": SECRET,
        "ELECTION_URL": ups["election"].address, "CANDIDATE_URL": ups["candidate"].address,
        "VOTER_URL": ups["voter"].address, "JOBS_URL": ups["jobs"].address},
        "/gateway/health", tmp / "gateway.log")
    svc.start()
    svc.wait_ready(timeout=20)
    e = Env(svc, ups)
    yield e
    code = svc.stop(grace=15)
    for up in ups.values():
        up.stop()
    assert code in (0, None), svc.log_tail()
    report = svc.sanitizer_report()
    assert not report, report


# --------------------------------------------------------------------------- raw HTTP


def parse_response(buf: bytes):
    """(status, headers, body, rest) for the first final response in buf, or None."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        rest = buf[end + 4:]
        if 100 <= status < 200:
            buf = rest
            continue
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                le = rest.find(b"\r\n")
                if le < 0:
                    return None
                size = int(rest[:le].split(b";")[0], 16)
                if size == 0:
                    te = rest.find(b"\r\n\r\n", le - 2 if le >= 2 else 0)
                    if te < 0:
                        return None
                    return status, headers, body, rest[te + 4:]
                if len(rest) < le + 2 + size + 2:
                    return None
                body += rest[le + 2:le + 2 + size]
                rest = rest[le + 2 + size + 2:]
        n = int(headers.get("content-length", "0"))
        if len(rest) < n:
            return None
        return status, headers, rest[:n], rest[n:]


def exchange(port: int, data: bytes, timeout: float = 4.0, responses: int = 1, trickle=None,
             linger: float = 0.0):
    """Sends data on a fresh connection; returns (list of (status, headers, body), closed)
    where closed tells whether the gateway closed the connection after its answers (waiting
    linger seconds for that after the last answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got, buf, closed = [], b"", False
    try:
        if trickle:
            for piece in trickle:
                s.sendall(piece)
                time.sleep(0.05)
        else:
            s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            parsed = parse_response(buf)
            if parsed and len(got) < responses:
                got.append(parsed[:3])
                buf = parsed[3]
                continue
            if len(got) >= responses:
                if not linger:
                    break
                s.settimeout(linger)  # does it close?
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
    finally:
        s.close()
    return got, closed


def head(method: str, target: str, *fields: str, body: bytes = b"", host: str = "gw") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def ordinary_client_gets_its_own_answer(env: Env) -> None:
    rid = "ordinary-" + uuid.uuid4().hex
    got, _ = exchange(env.port, head("GET", "/election/elections", f"X-Request-ID: {rid}"))
    assert got, "the ordinary client got no answer"
    status, headers, body = got[0]
    assert status == 200, (status, body[:200])
    assert headers["x-request-id"] == rid
    seen = json.loads(body)
    assert seen["headers"]["x-request-id"] == rid and seen["path"] == "/election/elections"
    env.expected += 1


def check(env: Env, data: bytes, status, forwarded: int = 0, close: bool | None = None,
          **kw) -> list:
    """Sends a hostile request; asserts the status (an int or a set), the number of requests
    the upstreams received because of it, optionally that the connection was closed, then
    that an ordinary client is served. Returns the new upstream requests."""
    before = env.count()
    before_list = env.received()
    got, closed = exchange(env.port, data, linger=1.0 if close is not None else 0.0, **kw)
    want = status if isinstance(status, (set, frozenset)) else {status}
    if None in want and not got:  # None: closed without an answer is right too
        assert closed
    else:
        assert got and got[0][0] in want, (got[0][0] if got else None, want, got[0][2][:300] if got else b"")
    if close is not None:
        assert closed == close, f"connection closed: {closed}, expected {close}"
    if forwarded:
        harness.wait_until(lambda: env.count() >= before + forwarded, timeout=5)
    time.sleep(0.02)
    new = [r for r in env.received() if r not in before_list]
    assert env.count() - before == forwarded, [(r.method, r.path) for r in new]
    env.expected += forwarded
    ordinary_client_gets_its_own_answer(env)
    assert env.count() == env.expected, "an upstream received a request nobody sent"
    return new


def forwarded_exactly(req, method: str, path: str, body: bytes = b"", scopes: str = "read vote"):
    """The upstream received exactly this request: method, normalised path, body, one
    framing field that matches the body, the gateway's identity fields."""
    assert req.method == method and req.path == path, (req.method, req.path)
    assert req.body == body
    framing = [(k.lower(), v) for k, v in req.header_list if k.lower() in ("content-length", "transfer-encoding")]
    assert len(framing) <= 1, framing
    if framing and framing[0][0] == "content-length":
        assert int(framing[0][1]) == len(body)
    names = [k.lower() for k, _ in req.header_list]
    for own in ("x-consumer-scopes", "x-gateway-proof", "x-forwarded-for", "x-forwarded-host", "host"):
        assert names.count(own) == 1, (own, req.header_list)
    assert req.headers["x-consumer-scopes"] == scopes
    assert req.headers["x-gateway-proof"].startswith("t=")
    # the raw bytes: one request, ending where its body ends
    assert req.raw.endswith(body if not req.chunked else b"\r\n\r\n")


# --------------------------------------------------------------------------- framing

CL_TE = [
    # (name, fields, body) — all refused with 400 and closed, nothing forwarded
    ("two_cl_different", ["Content-Length: 5", "Content-Length: 3"], b"hello"),
    ("two_cl_equal", ["Content-Length: 5", "Content-Length: 5"], b"hello"),
    ("two_cl_one_line", ["Content-Length: 5, 5"], b"hello"),
    ("two_cl_case", ["content-length: 5", "CONTENT-LENGTH: 5"], b"hello"),
    ("cl_plus", ["Content-Length: +5"], b"hello"),
    ("cl_minus", ["Content-Length: -5"], b"hello"),
    ("cl_hex", ["Content-Length: 0x5"], b"hello"),
    ("cl_space_inside", ["Content-Length: 5 5"], b"hello"),
    ("cl_letters", ["Content-Length: five"], b"hello"),
    ("cl_empty", ["Content-Length:"], b""),
    ("cl_overflow", ["Content-Length: 99999999999999999999999"], b"hello"),
    ("cl_decimal", ["Content-Length: 5.0"], b"hello"),
    ("cl_space_before_colon", ["Content-Length : 5"], b"hello"),
    ("cl_tab_before_colon", ["Content-Length\t: 5"], b"hello"),
    ("te_identity_cl", ["Transfer-Encoding: identity", "Content-Length: 5"], b"hello"),
    ("te_chunked_cl", ["Transfer-Encoding: chunked", "Content-Length: 5"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("cl_te_chunked", ["Content-Length: 5", "Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_identity", ["Transfer-Encoding: identity"], b"hello"),
    ("te_gzip_chunked", ["Transfer-Encoding: gzip, chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_chunked_chunked", ["Transfer-Encoding: chunked, chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_two_fields", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_chunked_identity", ["Transfer-Encoding: chunked", "Transfer-Encoding: identity"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_xchunked", ["Transfer-Encoding: xchunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_chunked_x", ["Transfer-Encoding: chunked-x"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_quoted", ['Transfer-Encoding: "chunked"'], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_space_before_colon", ["Transfer-Encoding : chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_tab_in_name", ["Transfer-Encoding\t: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("te_empty", ["Transfer-Encoding:"], b""),
    ("te_comma", ["Transfer-Encoding: chunked,"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("bare_cr_in_value", ["X-A: 1\rContent-Length: 5"], b"hello"),
    ("bare_cr_before_cl", ["X-A: 1\r", "Content-Length: 5"], b"hello"),
    ("control_in_value", ["X-A: a\x01b", "Content-Length: 5"], b"hello"),
    ("del_in_value", ["X-A: a\x7fb"], b""),
    ("space_in_name", ["X A: 1"], b""),
    ("name_with_slash", ["X/A: 1"], b""),
    ("two_hosts", ["Host: other"], b""),
    ("te_name_extended", ["Transfer-Encodingchunked: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ("cl_name_extended", ["Content-Length-X: 5", "Content-Length: 0"], b""),
]


@pytest.mark.parametrize("name,fields,body", CL_TE, ids=[c[0] for c in CL_TE])
def test_ambiguous_framing_is_refused_and_closed(env, name, fields, body):
    # a Content-Length beyond 64 bits is refused by libmicrohttpd itself (413, closed)
    status = {400, 413} if name == "cl_overflow" else 400
    check(env, head("POST", "/voter/votes", *fields, body=body), status, forwarded=0, close=True)


REQUEST_LINES = [
    ("space_in_target", b"GET /election/a b HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("tab_in_target", b"GET /election/a\tb HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("cr_in_target", b"GET /election/a\rb HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("ctl_in_target", b"GET /election/a\x01b HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("del_in_target", b"GET /election/a\x7fb HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("fragment", b"GET /election/elections#x HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("absolute_form", b"GET http://evil/election/elections HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("ctl_in_method", b"G\x01T /election/elections HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("no_host_11", b"GET /election/elections HTTP/1.1\r\n\r\n", 400),
    ("non_ascii_target", b"GET /election/\xc3\xa9 HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    ("http2_version", b"GET /election/elections HTTP/2.0\r\nHost: gw\r\n\r\n", 505),
    ("no_version", b"GET /election/elections\r\nHost: gw\r\n\r\n", 400),
    ("header_without_colon", b"GET /election/elections HTTP/1.1\r\nHost: gw\r\nnocolon\r\n\r\n", 400),
]


@pytest.mark.parametrize("name,data,status", REQUEST_LINES, ids=[c[0] for c in REQUEST_LINES])
def test_malformed_request_lines_are_refused(env, name, data, status):
    check(env, data, status, forwarded=0)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "FOO", "get", 'X"Y'])
def test_unknown_methods_are_501_or_400(env, method):
    status = 400 if '"' in method else 501
    check(env, head(method, "/election/elections"), status, forwarded=0)


def test_unknown_method_labels_stay_bounded(env):
    for m in ("BREW", "WHEN", 'A"B'):
        exchange(env.port, head(m, "/election/elections"))
    text = requests.get(f"http://127.0.0.1:{env.port}/gateway/metrics").text
    assert "BREW" not in text and "WHEN" not in text and 'A"B' not in text
    assert 'gateway_rejected_total{reason="method"}' in text


# libmicrohttpd 0.9.75 parses the head before the gateway sees it: it ends a line at a bare LF
# (and at a bare CR), ends a value at a NUL, skips extra spaces in the request line and folds
# obs-fold continuation lines into the field name. The gateway reads that back from
# libmicrohttpd's buffer — every line where a CRLF-ended, NUL-free head puts it, the head's end
# four NULs after the last line (admit.c, gw_admit_mhd_layout_ok) — and refuses them.
def _post(*lines: bytes, end: bytes = b"\r\n\r\n", body: bytes = b"hello") -> bytes:
    return b"\r\n".join(lines) + end + body


_RL = b"POST /voter/votes HTTP/1.1"
MHD_HIDDEN = [
    ("bare_lf_after_request_line", b"POST /voter/votes HTTP/1.1\nHost: gw\r\nContent-Length: 5\r\n\r\nhello"),
    ("bare_lf_line_end", b"POST /voter/votes HTTP/1.1\r\nHost: gw\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"),
    ("bare_lf_after_ows", b"POST /voter/votes HTTP/1.1\r\nHost: gw \nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"),
    ("bare_lf_before_cl", b"POST /voter/votes HTTP/1.1\r\nHost: gw\r\nX-A: 1\nContent-Length: 5\r\n\r\nhello"),
    ("nul_in_value", b"POST /voter/votes HTTP/1.1\r\nHost: gw\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello"),
    ("nul_in_cl", b"POST /voter/votes HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\x003\r\n\r\nhello"),
    ("obs_fold", b"POST /voter/votes HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n folded\r\nContent-Length: 5\r\n\r\nhello"),
    ("obs_fold_tab", b"POST /voter/votes HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n\tfolded\r\nContent-Length: 5\r\n\r\nhello"),
    ("obs_fold_cl", b"POST /voter/votes HTTP/1.1\r\nHost: gw\r\nContent-Length:\r\n 5\r\n\r\nhello"),
    # a bare LF ending the last field, or as the blank line that ends the head
    ("bare_lf_ending_last_field", _post(_RL, b"Host: gw", b"Content-Length: 5", end=b"\n\r\n")),
    ("bare_lf_lf_head_end", _post(_RL, b"Host: gw", b"Content-Length: 5", end=b"\n\n")),
    ("bare_lf_blank_line", _post(_RL, b"Host: gw", b"Content-Length: 5", end=b"\r\n\n")),
    ("bare_lf_last_field_nul_body", _post(_RL, b"Host: gw", b"Content-Length: 5", end=b"\n\r\n",
                                          body=b"\x00\x00\x00\x00\x00")),
    ("bare_lf_last_of_three", _post(_RL, b"Host: gw", b"X-A: 1", b"Content-Length: 5", end=b"\n\r\n")),
    ("bare_lf_first_field", _post(_RL, b"Host: gw\nX-A: 1", b"Content-Length: 5")),
    ("bare_lf_middle_field", _post(_RL, b"Host: gw", b"X-A: 1\nX-B: 2", b"Content-Length: 5")),
    ("bare_lf_every_line", b"POST /voter/votes HTTP/1.1\nHost: gw\nContent-Length: 5\n\nhello"),
    ("bare_lf_get_no_body", b"GET /election/elections HTTP/1.1\r\nHost: gw\n\r\n"),
    ("bare_lf_http10_request_line_only", b"GET /election/elections HTTP/1.0\n\r\n"),
    ("bare_lf_http10_lf_lf", b"GET /election/elections HTTP/1.0\n\n"),
    # a NUL at several places: right before the CRLF (of the last field, a middle one, the
    # first), as a whole value, in the target, in the method, in a name, with CR
    ("nul_before_crlf_last_field", _post(_RL, b"Host: gw", b"Content-Length: 5\x00")),
    ("nul_before_crlf_middle_field", _post(_RL, b"Host: gw", b"X-A: 1\x00", b"Content-Length: 5")),
    ("nul_before_crlf_host", _post(_RL, b"Host: gw\x00", b"Content-Length: 5")),
    ("nul_only_value", _post(_RL, b"Host: gw", b"X-A: \x00", b"Content-Length: 5")),
    ("nul_two_before_crlf", _post(_RL, b"Host: gw", b"X-A: 1\x00\x00", b"Content-Length: 5")),
    ("nul_after_ows", _post(_RL, b"Host: gw", b"X-A: 1 \x00", b"Content-Length: 5")),
    ("nul_before_crlf_get", b"GET /election/elections HTTP/1.1\r\nHost: gw\x00\r\n\r\n"),
    ("cr_nul_lf", _post(_RL, b"Host: gw", b"X-A: 1\r\x00\nContent-Length: 5")),
    ("nul_cr_lf_blank_line", _post(_RL, b"Host: gw", b"Content-Length: 5", end=b"\r\n\x00\r\n")),
    ("nul_in_target", b"POST /voter/votes\x00/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello"),
    ("nul_ending_target", b"GET /election/elections\x00 HTTP/1.1\r\nHost: gw\r\n\r\n"),
    ("nul_in_query", b"GET /election/elections?a=1\x00b HTTP/1.1\r\nHost: gw\r\n\r\n"),
    ("nul_in_method", b"GE\x00T /election/elections HTTP/1.1\r\nHost: gw\r\n\r\n"),
    ("nul_in_name", _post(_RL, b"Host: gw", b"X\x00A: 1", b"Content-Length: 5")),
    # extra whitespace in the request line (libmicrohttpd skips it)
    ("two_spaces_before_target", b"GET  /election/elections HTTP/1.1\r\nHost: gw\r\n\r\n"),
    ("two_spaces_before_version", b"GET /election/elections  HTTP/1.1\r\nHost: gw\r\n\r\n"),
]


@pytest.mark.parametrize("name,data", MHD_HIDDEN, ids=[c[0] for c in MHD_HIDDEN])
def test_what_libmicrohttpd_hides_is_refused_too(env, name, data):
    check(env, data, 400, forwarded=0, close=True)


# A NUL beside a bare CR or LF leaves in libmicrohttpd's buffer exactly the NULs a CRLF
# leaves: the layout cannot show it. The raw bytes can (gateway/src/rawcheck.h: a strict
# parser beside libmicrohttpd sees every byte the client sends), so these are refused too.
NUL_FOR_CR = [
    ("nul_lf_ending_field", _post(_RL, b"Host: gw", b"X-A: 1\x00\nContent-Length: 5")),
    ("nul_cr_ending_field", _post(_RL, b"Host: gw", b"X-A: 1\x00\rContent-Length: 5")),
    ("nul_lf_ending_last_field", _post(_RL, b"Host: gw", b"Content-Length: 5\x00\n", end=b"\r\n")),
    ("nul_lf_as_blank_line", _post(_RL, b"Host: gw", b"Content-Length: 5", end=b"\r\n\x00\n")),
    # (libmicrohttpd does not end a line at a bare CR: these heads end at the CRLF after it)
    ("nul_cr_as_blank_line", _post(_RL, b"Host: gw", b"Content-Length: 5", end=b"\r\n\x00\r\r\n")),
    ("crlf_cr_nul_at_head_end", _post(_RL, b"Host: gw", b"Content-Length: 5", end=b"\x00\r\n\r\x00\r\n")),
    ("cr_nul_crlf_request_line", b"GET /election/elections HTTP/1.0\r\x00\r\nX-A: 5\r\n\r\n"),
    ("nul_lf_request_line", b"GET /election/elections HTTP/1.1\x00\nHost: gw\r\n\r\n"),
    ("nul_lf_get_host", b"GET /election/elections HTTP/1.1\r\nHost: gw\x00\n\r\n"),
    ("nul_first_in_value_lf", _post(_RL, b"Host: gw", b"X-A: \x00\nContent-Length: 5")),
    ("nul_as_whole_value_lf", _post(_RL, b"Host: gw", b"X-A:\x00\nContent-Length: 5")),
]


@pytest.mark.parametrize("name,data", NUL_FOR_CR, ids=[c[0] for c in NUL_FOR_CR])
def test_a_nul_standing_in_for_cr_is_refused(env, name, data):
    check(env, data, 400, forwarded=0, close=True)


def test_a_bad_head_pipelined_behind_a_good_request_is_refused(env):
    # the good request, alone on the wire, is answered; the bad one that follows on the same
    # connection is refused and the connection closed, nothing of it forwarded
    good = b"GET /election/elections HTTP/1.1\r\nHost: gw\r\n\r\n"
    bad = _post(_RL, b"Host: gw", b"X-A: 1\x00\nContent-Length: 5")
    before = env.count()
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as s:
        s.sendall(good)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:80]
        harness.wait_until(lambda: env.count() >= before + 1, timeout=5)
        s.sendall(bad)
        rest = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 400"), rest[:80]
    time.sleep(0.05)
    env.expected += 1
    assert env.count() == env.expected
    ordinary_client_gets_its_own_answer(env)


def test_the_same_heads_with_crlf_everywhere_are_forwarded(env):
    # the counterpart of the cases above: the exact layout the check expects is accepted
    for data in (_post(_RL, b"Host: gw", b"Content-Length: 5"),
                 _post(_RL, b"Host: gw", b"X-A: 1", b"X-B:", b"X-C: \t ", b"Content-Length: 5"),
                 b"GET /election/elections?a=1&b HTTP/1.1\r\nHost: gw\r\n\r\n",
                 b"GET /election/elections HTTP/1.0\r\n\r\n"):
        new = check(env, data, 200, forwarded=1)
        if data.startswith(b"POST"):
            forwarded_exactly(new[0], "POST", "/voter/votes", b"hello")


CHUNKED = [
    ("size_overflow", b"10000000000000005\r\nhello\r\n0\r\n\r\n", {400, 413}),
    ("size_overflow_64", b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n", {400, 413, None}),
    ("size_not_hex", b"zz\r\nhello\r\n0\r\n\r\n", {400}),
    ("size_negative", b"-5\r\nhello\r\n0\r\n\r\n", {400}),
    ("size_huge_leading_zeros", b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n", {200, 400}),
]


@pytest.mark.parametrize("name,body,status", CHUNKED, ids=[c[0] for c in CHUNKED])
def test_bad_chunk_sizes_never_complete_a_request(env, name, body, status):
    new = check(env, head("POST", "/voter/votes", "Transfer-Encoding: chunked", body=body), status,
                forwarded=1 if name == "size_huge_leading_zeros" else 0)
    for r in new:
        forwarded_exactly(r, "POST", "/voter/votes", b"hello")


def test_chunk_extensions_are_dropped_and_the_body_rechunked(env):
    body = b"5;name=value;q=\"x\"\r\nhello\r\n6;ext\r\n world\r\n0\r\n\r\n"
    new = check(env, head("POST", "/voter/votes", "Transfer-Encoding: chunked", body=body), 200, forwarded=1)
    forwarded_exactly(new[0], "POST", "/voter/votes", b"hello world")
    assert b";" not in new[0].raw.split(b"\r\n\r\n", 1)[1]


def test_chunked_trailers_cannot_carry_identity_or_framing(env):
    body = (b"5\r\nhello\r\n0\r\nX-Consumer-ID: forged\r\nX-Consumer-Scopes: admin\r\n"
            b"X-Gateway-Proof: t=1,sig=00\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n"
            b"X-Checksum: abc\r\n\r\n")
    new = check(env, head("POST", "/voter/votes", "Transfer-Encoding: chunked", body=body), 200, forwarded=1)
    r = new[0]
    forwarded_exactly(r, "POST", "/voter/votes", b"hello")
    names = {k.lower() for k, _ in r.trailers}
    assert names == {"x-checksum"}, r.trailers


@pytest.mark.parametrize("trailer", [b"Transfer-Encoding : chunked", b"X\tY: 1", b"X-Ctl: a\x01b",
                                     b"X-Nul: a\x00", b"X-Nul-First: \x00", b"X-Cr: a\rb"],
                         ids=["space_before_colon", "tab_in_name", "control", "nul", "nul_first",
                              "bare_cr"])
def test_a_malformed_trailer_arriving_with_the_request_refuses_it(env, trailer):
    # the strict parser beside libmicrohttpd (rawcheck.h) sees the whole message before it is
    # admitted: 400, the connection closed, nothing forwarded. (Trailers arriving after the
    # request was admitted are dropped when malformed or naming framing/identity fields, as
    # the test above shows, and the connection is then refused any further request.)
    body = b"5\r\nhello\r\n0\r\n" + trailer + b"\r\nX-Checksum: abc\r\n\r\n"
    check(env, head("POST", "/voter/votes", "Transfer-Encoding: chunked", body=body), 400,
          forwarded=0, close=True)


def test_chunked_case_variants_are_accepted_once(env):
    for te in ("Chunked", "CHUNKED", "chunked"):
        new = check(env, head("POST", "/voter/votes", f"Transfer-Encoding: {te}",
                              body=b"5\r\nhello\r\n0\r\n\r\n"), 200, forwarded=1)
        forwarded_exactly(new[0], "POST", "/voter/votes", b"hello")


def test_pipelined_requests_are_answered_in_order(env):
    a, b = "pipe-a-" + uuid.uuid4().hex, "pipe-b-" + uuid.uuid4().hex
    data = (head("GET", "/election/elections", f"X-Request-ID: {a}") +
            head("POST", "/voter/votes", f"X-Request-ID: {b}", "Content-Length: 2", body=b"{}"))
    before = env.count()
    got, _ = exchange(env.port, data, responses=2)
    assert [g[0] for g in got] == [200, 200]
    assert got[0][1]["x-request-id"] == a and got[1][1]["x-request-id"] == b
    assert json.loads(got[1][2])["path"] == "/voter/votes"
    env.expected += 2
    assert env.count() == before + 2
    ordinary_client_gets_its_own_answer(env)


def test_pipelined_request_after_a_refused_one_is_never_read(env):
    smuggled = head("POST", "/election/drop/elections", "X-Consumer-Scopes: admin", "Content-Length: 0")
    data = head("POST", "/voter/votes", "Content-Length: 5", "Content-Length: 0", body=smuggled)
    got, closed = exchange(env.port, data, responses=1, linger=1.0)
    assert got[0][0] == 400 and closed
    ordinary_client_gets_its_own_answer(env)
    assert env.count() == env.expected
    assert not any("/drop/" in r.path for r in env.received())


def test_body_longer_than_content_length_becomes_no_hidden_request(env):
    hidden = head("POST", "/election/drop/elections", "Content-Length: 0")
    data = head("POST", "/voter/votes", "Content-Length: 2", body=b"{}" + hidden)
    got, _ = exchange(env.port, data, responses=2)
    assert got[0][0] == 200 and got[1][0] == 401  # the second is a request of its own, checked as such
    env.expected += 1
    ordinary_client_gets_its_own_answer(env)
    assert env.count() == env.expected
    assert not any("/drop/" in r.path for r in env.received())


def test_expect_100_continue_with_a_body_that_never_comes(env):
    data = head("POST", "/voter/votes", "Expect: 100-continue", "Content-Length: 10")
    s = socket.create_connection(("127.0.0.1", env.port), timeout=6)
    s.sendall(data)
    first = s.recv(4096)
    assert first.startswith(b"HTTP/1.1 100"), first
    ordinary_client_gets_its_own_answer(env)  # served while this one waits
    s.settimeout(6)
    rest = b""
    try:
        while True:
            c = s.recv(4096)
            if not c:
                break
            rest += c
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    assert b"HTTP/1.1 200" not in rest
    assert env.count() == env.expected, "the incomplete request reached nobody complete"


def test_expect_100_continue_refused_before_the_body(env):
    data = head("POST", "/election/drop/elections", "Expect: 100-continue", "Content-Length: 10")
    got, _ = exchange(env.port, data)
    assert got[0][0] == 401
    ordinary_client_gets_its_own_answer(env)
    assert env.count() == env.expected


# --------------------------------------------------------------------------- paths

# (route name, method, canonical path, scope) for every rule of the example configuration
RULES = [
    ("election", "GET", "/election/elections", "read"),
    ("election", "POST", "/election/elections", "write"),
    ("election-admin", "POST", "/election/drop/elections", "admin"),
    ("election-replay", "POST", "/election/events/replay", "admin"),
    ("candidate", "GET", "/candidate/candidates", "read"),
    ("candidate", "PATCH", "/candidate/candidates/c1", "write"),
    ("candidate-admin", "POST", "/candidate/drop/candidates", "admin"),
    ("candidate-replay", "POST", "/candidate/events/replay", "admin"),
    ("voter", "GET", "/voter/results/e1", "read"),
    ("voter", "POST", "/voter/results/e1", "admin"),
    ("voter-votes", "GET", "/voter/votes/v1", "read"),
    ("voter-votes", "POST", "/voter/votes", "vote"),
    ("voter-votes", "DELETE", "/voter/votes/v1", "admin"),
    ("voter-batch", "GET", "/voter/votes/batch/b1", "read"),
    ("voter-batch", "POST", "/voter/votes/batch", "write"),
    ("voter-batch", "DELETE", "/voter/votes/batch/b1", "admin"),
    ("voter-simulation", "GET", "/voter/simulation/e1", "admin"),
    ("voter-simulation", "POST", "/voter/simulation/e1", "admin"),
    ("voter-admin", "POST", "/voter/drop/votes", "admin"),
    ("jobs", "GET", "/jobs/tabulations", "read"),
    ("jobs", "POST", "/jobs/tabulations", "key"),
    ("jobs", "DELETE", "/jobs/j1", "admin"),
]
UPSTREAM_OF = {"election": "election", "candidate": "candidate", "voter": "voter", "jobs": "jobs"}


def spellings(path: str) -> list:
    """(spelling, same) pairs: same=True spellings mean the canonical path, the others are
    refused or name nothing."""
    segs = path.strip("/").split("/")
    first, rest = segs[0], "/".join(segs[1:])
    enc_first = "%" + format(ord(first[0]), "02x") + first[1:]
    enc_all = "".join("%" + format(ord(c), "02X") for c in first)
    last = segs[-1]
    enc_last = "/".join(segs[:-1]) + "/" + "%" + format(ord(last[0]), "02X") + last[1:]
    same = [
        path, f"/{first}//{rest}", f"//{path.lstrip('/')}", path + "/", f"/{enc_first}/{rest}",
        "/" + enc_last, f"/{enc_all}/{rest}", f"/v1{path}", f"/v1//{first}/{rest}", path + "//?a=/..",
    ]
    refused = [
        f"/{first}/./{rest}", f"/{first}/x/../{rest}", f"/{first}/%2E%2E/{rest}", f"/{first}%2F{rest}",
        f"/{first}\\{rest}", f"/{first.capitalize()}/{rest}", f"/{first}%00/{rest}", f"/v1/../{first}/{rest}",
    ]
    return [(s, True) for s in same] + [(s, False) for s in refused]


def rule_status(scope: str, key: str | None) -> int:
    have = {None: {"read", "vote"}, "h-free": {"read", "vote"}, "h-paid": {"read", "vote", "write"},
            "h-admin": {"read", "vote", "write", "admin"}}[key]
    if scope == "key":
        return 401 if key is None else 200
    if scope in have:
        return 200
    return 401 if key is None else 403


PATH_CASES = [(r, s, same) for r in RULES for s, same in spellings(r[2])]


@pytest.mark.parametrize("rule,spelling,same", PATH_CASES,
                         ids=[f"{r[1]}-{r[2]}-{i % 18}" for i, (r, _, _) in enumerate(PATH_CASES)])
def test_every_spelling_of_every_rule_has_the_canonical_rules(env, rule, spelling, same):
    route, method, canonical, scope = rule
    body = b"{}" if method in ("POST", "PATCH") else b""
    fields = [f"Content-Length: {len(body)}"] if body else []
    anon = rule_status(scope, None) if same else {400, 404}
    new = check(env, head(method, spelling, *fields, body=body), anon,
                forwarded=1 if same and anon == 200 else 0)
    for r in new:
        forwarded_exactly(r, method, canonical + (spelling[spelling.index("?"):] if "?" in spelling else ""),
                          body)
    if same and anon != 200:
        # the key that holds exactly the needed scope gets the canonical path upstream, no other
        key = {"write": "h-paid", "admin": "h-admin", "key": "h-free"}[scope]
        new = check(env, head(method, spelling, f"X-API-Key: {key}", *fields, body=body), 200,
                    forwarded=1)
        scopes = {"h-paid": "read vote write", "h-admin": "read vote write admin", "h-free": "read vote"}[key]
        forwarded_exactly(new[0], method,
                          canonical + (spelling[spelling.index("?"):] if "?" in spelling else ""),
                          body, scopes=scopes)
        assert new[0].headers["x-consumer-id"] == hashlib.sha256(key.encode()).hexdigest()


# --------------------------------------------------------------------------- destructive

DESTRUCTIVE = [
    ("POST", "/election/drop/elections", "admin"),
    ("POST", "/election/events/replay", "admin"),
    ("POST", "/candidate/drop/candidates", "admin"),
    ("POST", "/candidate/drop/elections", "admin"),
    ("POST", "/candidate/events/replay", "admin"),
    ("POST", "/voter/drop/votes", "admin"),
    ("POST", "/voter/drop/candidates", "admin"),
    ("DELETE", "/voter/votes/v1", "admin"),
    ("GET", "/voter/simulation/e1", "admin"),
    ("POST", "/voter/simulation/e1", "admin"),
    ("DELETE", "/jobs/j1", "admin"),
    ("POST", "/election/elections", "write"),
    ("PUT", "/election/elections/e1", "write"),
    ("PATCH", "/election/elections/e1", "write"),
    ("DELETE", "/election/elections/e1", "write"),
    ("POST", "/candidate/candidates", "write"),
    ("DELETE", "/candidate/candidates/c1", "write"),
    ("POST", "/voter/votes/batch", "write"),
]
CALLERS = [None, "h-free", "h-paid", "h-admin"]


@pytest.mark.parametrize("method,path,scope", DESTRUCTIVE, ids=[f"{m}-{p}" for m, p, _ in DESTRUCTIVE])
@pytest.mark.parametrize("caller", CALLERS, ids=["anonymous", "free", "write", "admin"])
def test_destructive_endpoints_need_their_scope(env, method, path, scope, caller):
    status = rule_status(scope, caller)
    fields = [f"X-API-Key: {caller}"] if caller else []
    if method in ("POST", "PUT", "PATCH"):
        fields.append("Content-Length: 0")
    new = check(env, head(method, path, *fields), status, forwarded=1 if status == 200 else 0)
    for r in new:
        scopes = {"h-paid": "read vote write", "h-admin": "read vote write admin"}[caller]
        forwarded_exactly(r, method, path, scopes=scopes)


@pytest.mark.parametrize("caller", CALLERS, ids=["anonymous", "free", "write", "admin"])
def test_head_on_the_simulation_alias_runs_nothing(env, caller):
    # the GET alias of the simulation casts votes: HEAD (safe) is no spelling of it — 405,
    # and the Allow the gateway sends does not offer HEAD; nothing reaches the voter service
    fields = [f"X-API-Key: {caller}"] if caller else []
    for path in ("/voter/simulation/e1", "/voter//simulation/%65%31", "/v1/voter/simulation/e1"):
        s = socket.create_connection(("127.0.0.1", env.port), timeout=4)
        before = env.count()
        try:
            s.sendall(head("HEAD", path, *fields))
            data = b""
            while b"\r\n\r\n" not in data:
                piece = s.recv(4096)
                if not piece:
                    break
                data += piece
        finally:
            s.close()
        status_line, _, rest = data.partition(b"\r\n")
        assert status_line.split(b" ")[1] == b"405", data[:200]
        allow = [line.split(b":", 1)[1].strip() for line in rest.split(b"\r\n")
                 if line.lower().startswith(b"allow:")]
        assert allow == [b"GET, POST"], data[:400]
        time.sleep(0.02)
        assert env.count() == before
        ordinary_client_gets_its_own_answer(env)
    assert env.count() == env.expected


def test_plain_curl_gets_the_admin_key_from_the_stacks_curlrc(env, tmp_path):
    # The original's sample-data scripts call plain curl with no key; scripts/stack writes a
    # .curlrc that adds the admin key, so they run unchanged with CURL_HOME pointing at it.
    # The line is taken from scripts/stack itself, so the two cannot drift apart.
    import re
    import subprocess
    stack = (harness.repo_root() / "scripts" / "stack").read_text()
    line = re.search(r'\\n(header = "X-API-Key: %s")\\n', stack).group(1)
    (tmp_path / ".curlrc").write_text(line % "h-admin" + "\n")
    url = f"http://127.0.0.1:{env.port}/election/drop/elections"
    before = env.count()
    plain = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url],
                           capture_output=True, text=True, env={"PATH": os.environ["PATH"], "CURL_HOME": str(tmp_path / "none")})
    assert plain.stdout == "401"
    assert env.count() == before
    keyed = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url],
                           capture_output=True, text=True, env={"PATH": os.environ["PATH"], "CURL_HOME": str(tmp_path)})
    assert keyed.stdout == "200", keyed
    harness.wait_until(lambda: env.count() == before + 1, timeout=5)
    env.expected += 1
    forwarded_exactly(env.ups["election"].requests("/election/drop/elections")[-1], "POST",
                      "/election/drop/elections", scopes="read vote write admin")
    ordinary_client_gets_its_own_answer(env)


def test_unknown_key_is_401_and_reaches_nothing(env):
    check(env, head("POST", "/election/drop/elections", "X-API-Key: guess", "Content-Length: 0"), 401)
    check(env, head("GET", "/election/elections", "Authorization: Bearer guess"), 401)
    check(env, head("GET", "/election/elections", "X-API-Key: h-free", "X-API-Key: h-admin"), 400)


# --------------------------------------------------------------------------- forged identity

FORGED = [
    "X-Consumer-ID: " + "f" * 64, "x-consumer-id: admin", "X-CONSUMER-SCOPES: read vote write admin",
    "X-Consumer-Scopes: admin", "X-Gateway-Proof: t=1800000000,sig=" + "0" * 64,
    "x-gateway-proof: forged", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: javascript",
    "Forwarded: for=1.2.3.4;host=evil.example", "X-Forwarded-Port: 1", "X-Forwarded-Prefix: /evil",
]


@pytest.mark.parametrize("field", FORGED)
def test_forged_identity_fields_never_reach_an_upstream(env, field):
    new = check(env, head("POST", "/voter/votes", field, field.upper(), "Content-Length: 2", body=b"{}"),
                200, forwarded=1)
    r = new[0]
    forwarded_exactly(r, "POST", "/voter/votes", b"{}")
    name = field.split(":")[0].lower()
    values = [v for k, v in r.header_list if k.lower() == name]
    assert all("evil" not in v and "admin" not in v and "f" * 64 not in v and "forged" not in v
               and "javascript" not in v for v in values), values
    assert "x-consumer-id" not in r.headers  # anonymous
    assert r.headers["x-consumer-scopes"] == "read vote"
    assert r.headers["x-forwarded-host"] == f"127.0.0.1:{env.port}"
    assert r.headers["x-forwarded-proto"] == "http"
    assert "forwarded" not in r.headers and "x-forwarded-port" not in r.headers


def test_the_proof_binds_method_path_caller_and_scopes(env):
    import hmac
    new = check(env, head("DELETE", "/voter//votes/%76%31", "X-API-Key: h-admin"), 200, forwarded=1)
    r = new[0]
    t = r.headers["x-gateway-proof"].split(",")[0][2:]
    msg = "\n".join(["DELETE", "/voter/votes/v1", t, hashlib.sha256(b"h-admin").hexdigest(),
                     "read vote write admin"]).encode()
    sig = hmac.new(SECRET.encode(), msg, hashlib.sha256).hexdigest()
    assert r.headers["x-gateway-proof"] == f"t={t},sig={sig}"
    assert abs(int(t) - time.time()) < 60


# --------------------------------------------------------------------------- heads


def test_huge_and_malformed_heads(env):
    check(env, head("GET", "/election/elections", "X-Big: " + "a" * 9000), {431, 400})
    check(env, head("GET", "/election/" + "a" * 9000), {414, 431, 400})
    check(env, head("GET", "/election/elections", *[f"X-F{i}: v" for i in range(200)]), {431, 400})
    check(env, b"GET /election/elections HTTP/1.1\r\nHost: gw\r\n" + b"X: y\r\n" * 3000 + b"\r\n", {431, 400})
    check(env, b"NOT HTTP AT ALL\r\n\r\n", {400, 505})


@pytest.mark.parametrize("size", [1000, 4000, 5500])
@pytest.mark.parametrize("trickle", [False, True], ids=["whole", "trickled"])
def test_large_clean_heads_pass_the_layout_check(env, size, trickle):
    # libmicrohttpd grows its read buffer while a large head trickles in; the layout check
    # (admit.c) must still find every line where a clean head puts it
    fields = [f"X-Pad-{i}: " + "v" * 90 for i in range(size // 100)]
    data = head("POST", "/voter/votes", *fields, "Content-Length: 5", body=b"hello")
    pieces = [data[i:i + 300] for i in range(0, len(data), 300)] if trickle else None
    new = check(env, data if not trickle else b"", 200, forwarded=1, trickle=pieces)
    forwarded_exactly(new[0], "POST", "/voter/votes", b"hello")


def test_binary_garbage_is_refused(env):
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
                 b"\x00\x00\x00\x00\r\n\r\n", b"GET\x00/ HTTP/1.1\r\n\r\n"):
        got, closed = exchange(env.port, junk)
        assert not got or got[0][0] >= 400
        ordinary_client_gets_its_own_answer(env)
    assert env.count() == env.expected


# --------------------------------------------------------------------------- upstream side


@pytest.mark.parametrize("kind", ["dupcl", "te-cl", "te-identity"])
def test_ambiguous_response_framing_is_502(env, kind):
    # a GET is tried once more (the route's retries: 1), each attempt on a fresh connection
    new = check(env, head("GET", f"/election/evil/{kind}"), 502, forwarded=2)
    assert [r.path for r in new] == [f"/election/evil/{kind}"] * 2


def test_extra_bytes_after_a_response_never_reach_the_next_client(env):
    for _ in range(3):
        got, _ = exchange(env.port, head("GET", "/election/evil/extra"))
        assert got[0][0] == 200 and json.loads(got[0][2]) == {"evil": True}
        env.expected += 1
        for _ in range(3):
            ordinary_client_gets_its_own_answer(env)
    assert env.count() == env.expected


# --------------------------------------------------------------------------- slowloris


def test_slow_clients_do_not_stop_the_gateway_serving_others(env):
    stop = threading.Event()
    socks = []

    def slow(i):
        s = socket.create_connection(("127.0.0.1", env.port), timeout=5)
        socks.append(s)
        data = head("POST", "/voter/votes", "Content-Length: 100", body=b"x" * 100)
        try:
            for b in data:
                if stop.is_set():
                    return
                s.sendall(bytes([b]))
                time.sleep(0.05)
        except OSError:
            pass

    threads = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(20)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    served = 0
    while time.monotonic() - t0 < 4:
        ordinary_client_gets_its_own_answer(env)
        served += 1
    stop.set()
    for s in socks:
        s.close()
    for t in threads:
        t.join(timeout=5)
    assert served >= 20
    time.sleep(0.5)
    assert env.count() == env.expected, "no slow request was completed upstream"


# --------------------------------------------------------------------------- limits (own gateway)


def test_unknown_keys_and_ipv6_clients_are_limited(gateway, upstreams):
    up, = upstreams(1)
    route = {"name": "r", "prefix": "/r", "upstreams": [up.address],
             "rules": [{"methods": ["*"], "scope": "read", "limit": "read"}]}
    gw = gateway(base_config([route], trusted_proxies=["127.0.0.1/32"],
                             tiers={"anonymous": {"scopes": ["read"], "read": "3/10s"},
                                    "free": {"scopes": ["read"], "read": "100/1s"}},
                             keys={"k": "free"}))
    # guessing keys spends the anonymous bucket of the guesser's address
    for i in range(3):
        r = requests.get(gw.url + "/r/x", headers={"X-API-Key": f"guess-{i}", "X-Forwarded-For": "198.51.100.1"})
        assert r.status_code == 401
    r = requests.get(gw.url + "/r/x", headers={"X-API-Key": "guess-9", "X-Forwarded-For": "198.51.100.1"})
    assert r.status_code == 429
    assert requests.get(gw.url + "/r/x", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    assert requests.get(gw.url + "/r/x", headers={"X-API-Key": "k", "X-Forwarded-For": "198.51.100.1"}).status_code == 200
    # IPv6: one bucket per /64, whatever the interface identifier
    for i in range(3):
        r = requests.get(gw.url + "/r/x", headers={"X-Forwarded-For": f"2001:db8:1:2::{i + 1:x}"})
        assert r.status_code == 200
    assert requests.get(gw.url + "/r/x", headers={"X-Forwarded-For": "2001:db8:1:2:ffff::9"}).status_code == 429
    assert requests.get(gw.url + "/r/x", headers={"X-Forwarded-For": "2001:db8:1:3::1"}).status_code == 200
    assert len(up.requests()) == 5
