"""A FAKE Kubernetes API server for the job service's `kubernetes` runner tests.

There is no cluster on the build and CI machines, so this stands in for the API server:
HTTPS on a loopback port with a certificate the test makes (the runner must trust it
through its CA file), bearer-token authentication, and just the endpoints the runner uses:

    POST   /apis/batch/v1/namespaces/{ns}/jobs                 create a Job (recorded)
    GET    /apis/batch/v1/namespaces/{ns}/jobs/{name}          its status (conditions)
    DELETE /apis/batch/v1/namespaces/{ns}/jobs/{name}          delete (propagationPolicy recorded)
    GET    /api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{name}
    GET    /api/v1/namespaces/{ns}/pods/{pod}/log

It also plays the kubelet: a created Job's "pod" is a local process running the Job's
container args with `command` (the real tabulate or a slow stand-in), with the volume
mount's subPath resolved below `volume_root` (the directory the claim would hold), and
the transitions Kubernetes would report: active → Complete, or Failed with reason
BackoffLimitExceeded (non-zero exit) or DeadlineExceeded (activeDeadlineSeconds passed; the
pod is killed). Deleting a Job kills its pod (SIGTERM to the process group, as the kubelet
would after a background-propagation delete)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import harness


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key)."""
    cert, key = directory / "ca.crt", directory / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=fake-kubernetes",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class FakePod:
    def __init__(self, name: str, argv: list[str], cwd: Path, deadline: float | None):
        self.name = name
        self.log_path = cwd / f".fake-pod-{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.monotonic()
        self.deadline = deadline
        self.killed_reason: str | None = None

    def poll(self):
        if self.proc.poll() is None and self.deadline and time.monotonic() - self.started > self.deadline:
            self.kill("DeadlineExceeded")
        return self.proc.poll()

    def kill(self, reason: str):
        if self.proc.poll() is None:
            self.killed_reason = reason
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class FakeKubernetes:
    def __init__(self, directory: Path, volume_root: Path, command: str, token: str = "s3cret",
                 namespace: str = "voter"):
        self.volume_root = volume_root
        self.command = command
        self.namespace = namespace
        self.token_path = directory / "token"
        self.token_path.write_text(token + "\n")
        self.accepted_token = token  # what this API server accepts (rotate it in a test)
        self.ca, key = make_certificate(directory)
        self.jobs: dict[str, dict] = {}   # name -> manifest, while the Job exists
        self.received: dict[str, dict] = {}  # name -> manifest as received (kept)
        self.pods: dict[str, FakePod] = {}
        self.deleted: list[dict] = []     # {name, query, body}
        self.requests: list[tuple[str, str, str]] = []  # method, path, authorization
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, code: int, doc) -> None:
                body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(doc, str) else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def _route(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                auth = self.headers.get("Authorization", "")
                body = self._body() if method in ("POST", "DELETE") else None
                with fake.lock:
                    fake.requests.append((method, self.path, auth))
                if auth != "Bearer " + fake.accepted_token:
                    return self._reply(401, {"kind": "Status", "code": 401, "message": "Unauthorized"})
                parts = url.path.strip("/").split("/")
                jobs_prefix = ["apis", "batch", "v1", "namespaces", fake.namespace, "jobs"]
                pods_prefix = ["api", "v1", "namespaces", fake.namespace, "pods"]
                if parts[:6] == jobs_prefix:
                    name = parts[6] if len(parts) > 6 else None
                    if method == "POST" and name is None:
                        return self._reply(*fake.create(body))
                    if method == "GET" and name:
                        return self._reply(*fake.job_status(name))
                    if method == "DELETE" and name:
                        return self._reply(*fake.delete(name, urllib.parse.parse_qs(url.query), body))
                if parts[:5] == pods_prefix and method == "GET":
                    if len(parts) == 5:
                        sel = urllib.parse.parse_qs(url.query).get("labelSelector", [""])[0]
                        return self._reply(*fake.list_pods(sel))
                    if len(parts) == 7 and parts[6] == "log":
                        return self._reply(*fake.pod_log(parts[5]))
                return self._reply(404, {"kind": "Status", "code": 404, "message": "not found"})

            def do_GET(self):  # noqa: N802
                self._route("GET")

            def do_POST(self):  # noqa: N802
                self._route("POST")

            def do_DELETE(self):  # noqa: N802
                self._route("DELETE")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", harness.free_port()), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ca, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # ---- the API ----

    def create(self, manifest):
        name = manifest["metadata"]["name"]
        with self.lock:
            if name in self.jobs:
                return 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists",
                             "message": f'jobs.batch "{name}" already exists'}
            self.jobs[name] = manifest
            self.received[name] = manifest
        spec = manifest["spec"]["template"]["spec"]
        container = spec["containers"][0]
        mount = container["volumeMounts"][0]
        # the pod's /work is the claim's subPath; paths in args are rewritten to it
        work = self.volume_root / mount["subPath"]
        argv = [self.command] + [a.replace(mount["mountPath"], str(work), 1) for a in container["args"]]
        pod = FakePod(f"{name}-x7k2p", argv, work, manifest["spec"].get("activeDeadlineSeconds"))
        with self.lock:
            self.pods[name] = pod
        return 201, dict(manifest, status={})

    def job_status(self, name):
        with self.lock:
            manifest, pod = self.jobs.get(name), self.pods.get(name)
        if manifest is None:
            return 404, {"kind": "Status", "code": 404, "message": "not found"}
        code = pod.poll()
        status: dict = {"active": 1}
        if code is not None:
            if pod.killed_reason == "DeadlineExceeded":
                status = {"failed": 1, "conditions": [
                    {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
            elif code == 0:
                status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
            else:
                status = {"failed": 1, "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
        return 200, dict(manifest, status=status)

    def delete(self, name, query, body):
        with self.lock:
            manifest = self.jobs.pop(name, None)
            pod = self.pods.pop(name, None)
            self.deleted.append({"name": name, "query": query, "body": body})
        if manifest is None:
            return 404, {"kind": "Status", "code": 404, "message": "not found"}
        if pod:
            pod.kill("Deleted")
        return 200, {"kind": "Status", "status": "Success"}

    def list_pods(self, selector: str):
        name = selector.split("=", 1)[1] if selector.startswith("job-name=") else None
        with self.lock:
            pod = self.pods.get(name) if name else None
        items = []
        if pod:
            code = pod.poll()
            state = {"running": {}} if code is None else {"terminated": {
                "exitCode": code if code >= 0 else 128 - code,
                "reason": "Completed" if code == 0 else "Error"}}
            items.append({"metadata": {"name": pod.name, "labels": {"job-name": name}},
                          "status": {"containerStatuses": [{"name": "tabulate", "state": state}]}})
        return 200, {"kind": "PodList", "items": items}

    def pod_log(self, pod_name: str):
        with self.lock:
            pods = [p for p in self.pods.values() if p.name == pod_name]
        if not pods:
            return 404, {"kind": "Status", "code": 404, "message": "pod not found"}
        return 200, "fake-kubelet: started\n" + pods[0].logs()

    def close(self):
        with self.lock:
            pods = list(self.pods.values())
        for pod in pods:
            pod.kill("Shutdown")
        self.server.shutdown()
        self.server.server_close()
