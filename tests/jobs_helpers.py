"""Helpers for the job service suites (tests/test_jobs*.py): fixtures of the tabulator,
submissions, polling, signatures and a slow stand-in for `tabulate`."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path

import requests

import harness

REPO = harness.repo_root()
FIXTURES = REPO / "tabulator" / "tests" / "fixtures"
SECRET = "jobs-test-secret"


def tabulate_bin() -> Path:
    return harness.build_dir() / "tabulator" / "tabulate"


def fixture(name: str) -> dict:
    """A worked example of the tabulator: rules (text), ballots (text), expected (bytes)."""
    d = FIXTURES / name
    return {"rules": (d / "rules.json").read_text(), "ballots": (d / "ballots.csv").read_text(),
            "expected": (d / "expected.json").read_bytes()}


def jobs_env(work_dir: Path, **overrides) -> dict:
    """Environment of a jobs service with the local runner and the real tabulate.

    JOBS_MEMORY_MB=0 because the sanitizer build of tabulate reserves terabytes of address
    space (RLIMIT_AS would stop it at start); the limit itself is tested with a wrapper."""
    env = {
        "JOBS_RUNNER": "local",
        "JOBS_TABULATE_BIN": str(tabulate_bin()),
        "JOBS_WORK_DIR": str(work_dir),
        "JOBS_HMAC_SECRET": SECRET,
        "JOBS_MEMORY_MB": "0",
        "JOBS_SWEEP_MS": "200",
        "JOBS_DRAIN_S": "2",
        "JOBS_KILL_GRACE_S": "1",
        "JOBS_LEASE_S": "4",
        "JOBS_WEBHOOK_BACKOFF_MS": "200",
        # the suites' webhook receivers listen on loopback, which the default policy
        # ("public") refuses; None as an override removes a variable (the default applies)
        "JOBS_CALLBACK_ALLOW": "public,127.0.0.0/8",
    }
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def submit_json(base: str, rules, ballots: str, headers=None, **extra) -> requests.Response:
    body = {"rules": json.loads(rules) if isinstance(rules, str) else rules, "ballots": ballots}
    body.update(extra)
    return requests.post(f"{base}/jobs/tabulations", json=body, headers=headers or {}, timeout=30)


def submit_multipart(base: str, rules: str, ballots: str, headers=None,
                     callback: str | None = None) -> requests.Response:
    files = {"rules": ("rules.json", rules, "application/json"),
             "ballots": ("ballots.csv", ballots, "text/csv")}
    data = {"callbackUrl": callback} if callback else None
    return requests.post(f"{base}/jobs/tabulations", files=files, data=data,
                         headers=headers or {}, timeout=30)


def status(base: str, job_id: str) -> dict:
    r = requests.get(f"{base}/jobs/{job_id}", params={"view": "status"},
                     headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def wait_final(base: str, job_id: str, timeout: float = 30) -> requests.Response:
    """Polls GET /jobs/{id} (without following redirects) until it is no longer 202."""
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(f"{base}/jobs/{job_id}", allow_redirects=False, timeout=30)
        if r.status_code != 202:
            return r
        assert r.headers.get("Retry-After"), r.headers
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {r.json()['status']} after {timeout}s")
        time.sleep(0.1)


def wait_status(base: str, job_id: str, wanted, timeout: float = 30) -> dict:
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    return harness.wait_until(lambda: (lambda s: s if s["status"] in wanted else None)(
        status(base, job_id)), timeout=timeout, interval=0.1,
        message=f"job {job_id} in {sorted(wanted)}")


def sign(job_id: str, expires: int, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{job_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def slow_tabulate(path: Path, sleep_s: float, real: Path | None = None) -> Path:
    """A stand-in for tabulate that records its pid and process group beside the control
    file (wrapper.pid: "<pid> <pgid>"), sleeps, then becomes the real program (exec, so the
    pid stays the one recorded and a stop reaches it)."""
    real = real or tabulate_bin()
    path.write_text(
        "#!/bin/sh\n"
        'dir=$(dirname "$1")\n'
        'read -r _ _ _ _ pgid _ < /proc/$$/stat\n'
        'echo "$$ $pgid" > "$dir/wrapper.pid.tmp"\n'
        'mv "$dir/wrapper.pid.tmp" "$dir/wrapper.pid"\n'
        'echo \'{"phase":"reading","done":5,"total":10}\' > "$dir/progress.json"\n'
        'echo "wrapper: sleeping"\n'
        f"sleep {sleep_s} &\n"
        "wait $!\n"
        f'exec "{real}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def wrapper_pid(work_dir: Path, timeout: float = 15) -> tuple[int, int]:
    """(pid, pgid) written by slow_tabulate in some job directory under work_dir."""
    def find():
        for f in work_dir.glob("*/wrapper.pid"):
            text = f.read_text().split()
            if len(text) == 2:
                return int(text[0]), int(text[1])
        return None
    return harness.wait_until(find, timeout=timeout, interval=0.05,
                              message="the job process to start")


def group_alive(pgid: int) -> list[int]:
    """Live members of process group pgid."""
    return harness._group_members(pgid)  # noqa: SLF001 - the harness's own helper


def big_ballots(rows: int, candidates=("A", "B", "C", "D")) -> str:
    lines = ["id,rank1,rank2,rank3"]
    n = len(candidates)
    for i in range(rows):
        a, b, c = candidates[i % n], candidates[(i + 1) % n], candidates[(i + 2) % n]
        lines.append(f"b{i},{a},{b},{c}")
    return "\n".join(lines) + "\n"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
