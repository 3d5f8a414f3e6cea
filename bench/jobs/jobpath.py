"""Job-path overhead, one side of bench/jobs/run.

    jobpath.py service URL RULES BALLOTS N     the job service end to end, N runs
    jobpath.py direct  TABULATE DIR N          `TABULATE DIR/control.json`, N runs
    jobpath.py docker  IMAGE DIR N             `docker run --rm --network none -v DIR:/work
                                               IMAGE /work/control.json`, N runs

One run through the service is what a client does: POST /jobs/tabulations (JSON) → 202;
GET /jobs/{id}?wait=30 until it is no longer 202 → 303; GET the signed Location → 200
(over one keep-alive connection, as a client library would). After one warm-up run, prints
`median_ms=… p90_ms=… min_ms=…` and for the service also the medians of its three legs
(submit, wait for 303, fetch result). The result of the last run is written to
DIR/last-result.json (service: the directory of BALLOTS) so the caller can compare it with
the program's own output."""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return f"median_ms={statistics.median(ms):.2f} p90_ms={p90:.2f} min_ms={ms[0]:.2f} n={len(ms)}"


class Client:
    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def call(self, method: str, path: str, body: bytes | None = None, headers=None):
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                return r.status, dict(r.getheaders()), r.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def service_run(c: Client, payload: bytes) -> tuple[float, float, float, bytes]:
    t0 = time.perf_counter()
    st, _, body = c.call("POST", "/jobs/tabulations", payload, {"Content-Type": "application/json"})
    if st != 202:
        raise SystemExit(f"jobpath: submit answered {st}: {body[:300]!r}")
    job = json.loads(body)["id"]
    t1 = time.perf_counter()
    while True:
        st, hdrs, body = c.call("GET", f"/jobs/{job}?wait=30")
        if st != 202:
            break
    if st != 303:
        raise SystemExit(f"jobpath: job {job} ended with {st}: {body[:500]!r}")
    loc = urllib.parse.urlsplit(hdrs["Location"])
    t2 = time.perf_counter()
    st, _, result = c.call("GET", f"{loc.path}?{loc.query}")
    if st != 200:
        raise SystemExit(f"jobpath: result answered {st}")
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, result


def main() -> int:
    mode = sys.argv[1]
    if mode == "service":
        url, rules, ballots, n = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
        payload = json.dumps({"rules": json.loads(rules.read_text()),
                              "ballots": ballots.read_text()}).encode()
        c = Client(url)
        service_run(c, payload)  # warm-up: connections, queue, collections
        legs, totals = [], []
        for _ in range(n):
            a, b, d, result = service_run(c, payload)
            legs.append((a, b, d))
            totals.append(a + b + d)
        (ballots.parent / "last-result.json").write_bytes(result)
        med = [statistics.median(x[i] for x in legs) * 1000 for i in range(3)]
        print(f"{summary(totals)} submit_ms={med[0]:.2f} wait_ms={med[1]:.2f} fetch_ms={med[2]:.2f}")
        return 0
    what, d, n = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    if mode == "direct":
        cmd = [what, str(d / "control.json")]
    elif mode == "docker":
        cmd = ["docker", "run", "--rm", "--network", "none", "-v", f"{d}:/work", what,
               "/work/control.json"]
    else:
        raise SystemExit(f"jobpath: unknown mode {mode}")
    samples = []
    for i in range(n + 1):
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True)
        took = time.perf_counter() - t0
        if run.returncode != 0:
            raise SystemExit(f"jobpath: {' '.join(cmd)} exited {run.returncode}: {run.stderr[-500:]!r}")
        if i:  # the first run is the warm-up
            samples.append(took)
    (d / "last-result.json").write_bytes((d / "result.json").read_bytes())
    print(summary(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
