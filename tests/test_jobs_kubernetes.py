"""The `kubernetes` runner against a FAKE API server (tests/jobs_fake_k8s.py).

There is no Kubernetes cluster on these machines (kubectl is a client only), so the API
server is a small Python stand-in on a loopback port: HTTPS with a certificate made by the
test (the runner must trust it through JOBS_K8S_CA_FILE), a bearer token file, and the
batch/v1 Job and pod endpoints the runner uses. It checks what a real API server would
not tell us in a test: the Job manifest the runner sends (limits, deadline, TTL, volume,
security settings), and it plays the transitions (active → Complete / Failed) by running
the real tabulate as the "pod" on the shared volume directory."""

from __future__ import annotations

import pytest
import requests

from harness import admin_request as admin, wait_until
from jobs_fake_k8s import FakeKubernetes
from jobs_helpers import (fixture, jobs_env, slow_tabulate, status, submit_json, tabulate_bin,
                          wait_final)


@pytest.fixture
def fake_k8s(tmp_path):
    volume = tmp_path / "claim"
    volume.mkdir()
    fakes = []

    def start(command=None):
        fake = FakeKubernetes(tmp_path, volume, str(command or tabulate_bin()))
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.close()


def k8s_env(fake, **extra):
    env = dict(JOBS_RUNNER="kubernetes", JOBS_K8S_API_URL=fake.url,
               JOBS_K8S_TOKEN_FILE=fake.token_path, JOBS_K8S_CA_FILE=fake.ca,
               JOBS_K8S_NAMESPACE=fake.namespace, JOBS_K8S_IMAGE="registry.local/voter-tabulator:1.0",
               JOBS_K8S_PVC="voter-jobs-work", JOBS_K8S_TTL_S=120, JOBS_K8S_POLL_MS=100,
               JOBS_MEMORY_MB=128, JOBS_CPUS="0.5", JOBS_DEADLINE_S=30)
    env.update(extra)
    return jobs_env(fake.volume_root, **env)


def test_kubernetes_job_manifest_poll_logs_and_background_delete(service_factory, fake_k8s):
    fake = fake_k8s()
    svc = service_factory("jobs", env=k8s_env(fake))
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    r = wait_final(svc.url, job_id, timeout=30)
    assert r.status_code == 303, r.text
    assert requests.get(r.headers["Location"]).content == fx["expected"]

    name = f"voter-job-{job_id}-1"
    creates = [(m, p) for m, p, _ in fake.requests if m == "POST"]
    assert creates == [("POST", "/apis/batch/v1/namespaces/voter/jobs")]
    # every call authenticated with the token file's token
    assert all(auth == "Bearer s3cret" for _, _, auth in fake.requests)
    manifest = fake.received[name]
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    assert manifest["metadata"]["name"] == name
    assert manifest["metadata"]["labels"]["voter.job"] == job_id
    spec = manifest["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 30
    assert spec["ttlSecondsAfterFinished"] == 120
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    assert c["image"] == "registry.local/voter-tabulator:1.0"
    assert c["args"] == ["/work/control.json"]
    assert c["resources"]["limits"] == {"cpu": "500m", "memory": "128Mi"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["volumeMounts"] == [{"name": "work", "mountPath": "/work", "subPath": f"{job_id}-1"}]
    assert pod["volumes"] == [{"name": "work", "persistentVolumeClaim": {"claimName": "voter-jobs-work"}}]
    # polled, asked for the pod and its log, then deleted with background propagation
    paths = [p for m, p, _ in fake.requests if m == "GET"]
    assert f"/apis/batch/v1/namespaces/voter/jobs/{name}" in paths
    assert any(p.startswith("/api/v1/namespaces/voter/pods?labelSelector=job-name%3D") for p in paths)
    assert f"/api/v1/namespaces/voter/pods/{name}-x7k2p/log?container=tabulate&tailLines=1000" in paths
    final = [d for d in fake.deleted if d["name"] == name][-1]
    assert final["query"]["propagationPolicy"] == ["Background"]
    assert final["body"]["propagationPolicy"] == "Background"
    assert name not in fake.jobs
    assert "fake-kubelet: started" in requests.get(f"{svc.url}/jobs/{job_id}/logs").text


def test_kubernetes_cancel_deletes_the_job(service_factory, fake_k8s, tmp_path):
    fake = fake_k8s(slow_tabulate(tmp_path / "slow.sh", 60))
    svc = service_factory("jobs", env=k8s_env(fake))
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    name = f"voter-job-{job_id}-1"
    wait_until(lambda: name in fake.pods and status(svc.url, job_id)["status"] == "running",
               timeout=15, message="the Job is created and running")
    pod = fake.pods[name]
    assert admin("DELETE", f"{svc.url}/jobs/{job_id}").status_code == 202
    wait_until(lambda: name not in fake.jobs, timeout=10, message="the Job is deleted")
    assert pod.proc.poll() is not None  # the pod's process was stopped
    assert [d["query"]["propagationPolicy"] for d in fake.deleted if d["name"] == name][-1] == ["Background"]
    assert status(svc.url, job_id)["status"] == "cancelled"


def test_kubernetes_deadline_exceeded_fails_the_job(service_factory, fake_k8s, tmp_path):
    fake = fake_k8s(slow_tabulate(tmp_path / "slow.sh", 60))
    svc = service_factory("jobs", env=k8s_env(fake, JOBS_DEADLINE_S=2))
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    r = wait_final(svc.url, job_id, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed" and r.json()["reason"] == "deadline exceeded"
    assert fake.received[f"voter-job-{job_id}-1"]["spec"]["activeDeadlineSeconds"] == 2
    assert f"voter-job-{job_id}-1" not in fake.jobs  # deleted after


def test_kubernetes_wrong_token_is_a_runner_error(service_factory, fake_k8s):
    fake = fake_k8s()
    svc = service_factory("jobs", env=k8s_env(fake, JOBS_MAX_ATTEMPTS=1))
    fake.accepted_token = "rotated"  # the API server no longer accepts our token
    fx = fixture("small-irv")
    job_id = submit_json(svc.url, fx["rules"], fx["ballots"]).json()["id"]
    r = wait_final(svc.url, job_id, timeout=20)
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert "401" in r.json()["reason"]
