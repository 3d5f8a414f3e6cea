"""Helpers of tests/test_web.py: a Server-Sent Events reader and the sample stack (the three
services and the gateway serving web/, loaded with scripts/data/sample-data.json)."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from urllib.parse import quote, urlsplit

import requests

import harness
from harness import wait_until

SAMPLE = json.loads((harness.repo_root() / "scripts" / "data" / "sample-data.json").read_text())


class SSE:
    """Reads one text/event-stream over a raw socket (no client-side buffering to hide
    anything), parsing events on a thread: .events is a queue of dicts {id, event, data};
    comments (heartbeats) are counted in .comments."""

    def __init__(self, url: str, last_event_id: str | None = None, timeout: float = 10):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
        if last_event_id:
            head += f"Last-Event-ID: {last_event_id}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.sock.settimeout(120)  # a quiet stream sends a heartbeat every STREAM_HEARTBEAT_S
        self.events: queue.Queue = queue.Queue()
        self.comments = 0
        self.status = None
        self.headers: dict[str, str] = {}
        self.closed = threading.Event()
        self._head = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._head.wait(timeout):
            raise AssertionError("no response head on the event stream")

    def _run(self):
        f = self.sock.makefile("rb")
        try:
            status = f.readline().decode()
            self.status = int(status.split()[1])
            chunked = False
            while True:
                line = f.readline().decode().rstrip("\r\n")
                if not line:
                    break
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
                if k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                    chunked = True
            self._head.set()
            buf = ""
            while True:
                if chunked:
                    size = f.readline()
                    if not size:
                        break
                    n = int(size.strip() or b"0", 16)
                    if n == 0:
                        break
                    data = f.read(n)
                    f.readline()
                else:
                    data = f.read1(65536)
                    if not data:
                        break
                buf += data.decode()
                while "\n\n" in buf:
                    block, buf = buf.split("\n\n", 1)
                    ev = {"id": None, "event": "message", "data": []}
                    comment_only = True
                    for line in block.split("\n"):
                        if line.startswith(":"):
                            continue
                        comment_only = False
                        k, _, v = line.partition(":")
                        v = v[1:] if v.startswith(" ") else v
                        if k == "data":
                            ev["data"].append(v)
                        elif k in ("id", "event", "retry"):
                            ev[k] = v
                    if comment_only:
                        self.comments += 1
                    elif ev["data"]:
                        ev["data"] = "\n".join(ev["data"])
                        self.events.put(ev)
        except (OSError, ValueError):
            pass
        finally:
            self._head.set()
            self.closed.set()

    def next(self, timeout: float = 5.0) -> dict:
        return self.events.get(timeout=timeout)

    def results_until(self, predicate, timeout: float = 5.0) -> dict:
        """The first event whose parsed data satisfies predicate."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching event in time")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no matching event in time") from None
            if predicate(json.loads(ev["data"])):
                return ev

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def tally(doc: dict, candidate: str) -> int:
    return next((r["votes"] for r in doc["results"] if r["candidate"] == candidate), 0)


def load_sample(base: str, voter_urls: list[str], headers: dict, timeout: float = 60) -> None:
    """POSTs the sample elections and candidates through base (the gateway) with headers
    (a key holding the write scope) and waits until every voter replica has all of them."""
    for e in SAMPLE["elections"]:
        r = requests.post(f"{base}/election/elections", json=e, headers=headers)
        assert r.status_code == 201, r.text
    titles = {e["title"] for e in SAMPLE["elections"]}
    wait_until(lambda: {e["title"] for e in requests.get(f"{base}/candidate/elections?size=100").json()
                        ["_embedded"]["elections"]} == titles, timeout=timeout,
               message="the candidate service knows the sample elections")
    for c in SAMPLE["candidates"]:
        r = requests.post(f"{base}/candidate/candidates", json=c, headers=headers)
        assert r.status_code == 201, r.text
    for url in voter_urls:
        wait_until(lambda u=url: requests.get(f"{u}/voter/candidates?size=1").json()["page"]["totalElements"]
                   == len(SAMPLE["candidates"]) and
                   requests.get(f"{u}/voter/elections?size=1").json()["page"]["totalElements"]
                   == len(SAMPLE["elections"]), timeout=timeout,
                   message="the voter replicas have the sample candidates and elections")


def enc(s: str) -> str:
    return quote(s, safe="")


# ---------------------------------------------------------------- the browser

ARTIFACTS = harness.repo_root() / "tests" / "artifacts"
DESKTOP, PHONE = (1280, 800), (360, 740)


def chromium(size=DESKTOP, dark: bool = False):
    """Headless Chromium through Debian's chromedriver, with the browser log readable."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", "--disable-background-networking",
                f"--window-size={size[0]},{size[1]}"):
        opts.add_argument(arg)
    if dark:
        opts.add_argument("--force-dark-mode")
        opts.add_argument("--blink-settings=preferredColorScheme=0")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    driver.set_window_size(*size)
    if dark:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    return driver


def console_errors(driver, allow: tuple[str, ...] = ()) -> list[str]:
    """SEVERE entries of the browser log since the last call, minus the allowed ones."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allow)]


def screenshot(driver, name: str) -> None:
    """The whole page (not only the viewport) as tests/artifacts/<name>.png."""
    import base64
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 4000), "scale": 1}})
    (ARTIFACTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def no_horizontal_scroll(driver) -> bool:
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1")
