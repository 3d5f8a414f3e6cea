"""Deployment manifests, checked offline: the Kubernetes overlays render with
`kubectl kustomize`, every rendered object decodes strictly into its Kubernetes API type
(tools/k8scheck, built from k8s.io/api through the Go module proxy, cached in
/opt/voter-tools/bin) or, for the operator kinds of the prod overlay (RabbitmqCluster,
MongoDBCommunity), validates strictly against the minimal hand-written CRD subsets in
tools/k8scheck/crds (the published CRDs cannot be fetched here), the suite's own policies
hold (probes, limits, non-root, ClusterIP only, ingress to the gateway, minimal RBAC,
network isolation, a three-node broker cluster and a three-member replica set, services
given a list of brokers and a replica-set URI), and docker-compose.yml parses with
Debian's docker-compose 1.29 and follows the same rules.

No cluster and no Docker engine are needed."""

from __future__ import annotations

import atexit
import base64
import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

import harness
from harness import TOOLS_DIR, repo_root

ROOT = repo_root()
OVERLAYS = sorted(p.name for p in (ROOT / "k8s" / "overlays").iterdir() if p.is_dir())
GO = os.environ.get("GO", shutil.which("go") or "/usr/local/go/bin/go")
CHECKER_SRC = ROOT / "tools" / "k8scheck"
CHECKER = TOOLS_DIR / "bin" / "k8scheck"

DOMAIN = ("election", "candidate", "voter")
SERVICES = DOMAIN + ("jobs", "gateway")
# Pods the jobs service creates at run time (kubernetes runner): policies may select them.
RUNTIME_PODS = "app.kubernetes.io/name=voter-tabulate"
DATABASES = ("election", "candidate", "voter", "jobs")  # one database and user each
# What the prod overlay expects to exist before `kubectl apply` (docs/deploy.md): made by
# hand, never kept in the repository ...
PROD_EXTERNAL_SECRETS = ("jobs-secrets", "gateway-proof", "gateway-keys", "gateway-config")
PROD_DB_PASSWORDS = tuple(f"{d}-mongodb-password" for d in DATABASES)
# ... and what the operators write (RabbitMQ Cluster Operator: <cluster>-default-user;
# MongoDB Community Operator: each user's connectionStringSecretName), with the labels of
# the pods they create (NetworkPolicies select them).
PROD_OPERATOR_SECRETS = ("rabbitmq-default-user",) + tuple(f"{d}-mongodb-uri" for d in DATABASES)
PROD_OPERATOR_PODS = ("app.kubernetes.io/name=rabbitmq", "app=mongo-svc")
# Secrets compose refuses to start without (${VAR:?...}); .env.example leaves them empty.
COMPOSE_SECRETS = ("MONGO_ROOT_PASSWORD", "ELECTION_DB_PASSWORD", "CANDIDATE_DB_PASSWORD",
                   "VOTER_DB_PASSWORD", "JOBS_DB_PASSWORD", "ELECTION_MONGODB_URI",
                   "CANDIDATE_MONGODB_URI", "VOTER_MONGODB_URI", "JOBS_MONGODB_URI",
                   "RABBITMQ_PASSWORD", "JOBS_HMAC_SECRET", "GATEWAY_PROOF_SECRET",
                   "GATEWAY_ADMIN_KEY")
# Strings of the demo secrets this repository once shipped: none may come back. (The demo
# API keys of the gateway configurations are the gateway's tests' business.)
PUBLISHED_SECRETS = ("voter-dev-", "change-me")
JOBS_RBAC = {("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
             ("", "pods"): {"get", "list"},
             ("", "pods/log"): {"get"}}


# --------------------------------------------------------------------------- helpers

def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed (ENVIRONMENT.md lists it as part of the machine)")
    return path


_tree: list[Path] = []


def k8s_tree() -> Path:
    """A private copy of k8s/ with the dev overlay's secrets generated in it by
    `scripts/secrets k8s-dev` (as a user does once): the checkout's own git-ignored
    k8s/overlays/dev/secrets/ is neither read nor written."""
    if not _tree:
        tmp = Path(tempfile.mkdtemp(prefix="voter-k8s-"))
        atexit.register(shutil.rmtree, tmp, True)
        shutil.copytree(ROOT / "k8s", tmp / "k8s", ignore=shutil.ignore_patterns("secrets"))
        r = subprocess.run([str(ROOT / "scripts" / "secrets"), "k8s-dev",
                            str(tmp / "k8s" / "overlays" / "dev" / "secrets")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        _tree.append(tmp / "k8s")
    return _tree[0]


def kustomize(path: Path) -> subprocess.CompletedProcess:
    need("kubectl")
    return subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True,
                          timeout=120)


def render(overlay: str) -> str:
    r = kustomize(k8s_tree() / "overlays" / overlay)
    assert r.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{r.stderr}"
    return r.stdout


_rendered: dict[str, list[dict]] = {}


def objects(overlay: str) -> list[dict]:
    if overlay not in _rendered:
        _rendered[overlay] = [d for d in yaml.safe_load_all(render(overlay)) if d]
    return _rendered[overlay]


def of_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def named(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(objs):
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def workload(objs, name):
    """The one Deployment or StatefulSet called name (the voter is a StatefulSet: its pods
    need stable names, see test_voter_processes_each_count_into_their_own_shard)."""
    found = [o for o in workloads(objs) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one Deployment or StatefulSet {name}, found {len(found)}"
    return found[0]


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def component(workload) -> str:
    return workload["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component", "")


def checker_stamp() -> str:
    """Hash of the checker's sources: a stale cached binary is rebuilt."""
    h = hashlib.sha256()
    for f in (sorted(CHECKER_SRC.glob("*.go")) + sorted(CHECKER_SRC.glob("crds/*.yaml"))
              + [CHECKER_SRC / "go.mod", CHECKER_SRC / "go.sum"]):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def k8scheck() -> Path:
    """tools/k8scheck, built once per machine (and again when its sources change)."""
    stamp_file = CHECKER.with_name("k8scheck.stamp")
    stamp = checker_stamp()
    if CHECKER.exists() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        return CHECKER
    if not Path(GO).exists():
        pytest.fail(f"Go is needed to build tools/k8scheck and was not found ({GO}); "
                    "install it at /usr/local/go or set GO")
    CHECKER.parent.mkdir(parents=True, exist_ok=True)
    with open(CHECKER.with_name(".k8scheck.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two suites on one machine build it once
        if CHECKER.exists() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
            return CHECKER
        env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0", GOTOOLCHAIN="local")
        tmp = CHECKER.with_name(f"k8scheck.tmp{os.getpid()}")
        r = subprocess.run([GO, "build", "-trimpath", "-o", str(tmp), "."], cwd=CHECKER_SRC,
                           env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            hint = ""
            if re.search(r"proxy\.golang\.org|dial tcp|i/o timeout|no such host|connection refused",
                         r.stderr):
                hint = ("\nThe Go module proxy looks unreachable: the checker needs k8s.io/api and "
                        "k8s.io/apimachinery (pinned in tools/k8scheck/go.mod) downloaded once.")
            pytest.fail(f"building tools/k8scheck failed:{hint}\n{r.stderr[-4000:]}", pytrace=False)
        tmp.replace(CHECKER)
        stamp_file.write_text(stamp + "\n")
    return CHECKER


def run_check(k8scheck: Path, text: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(k8scheck), "-q", *args], input=text, capture_output=True, text=True,
                          timeout=120)


# --------------------------------------------------------------------------- Kubernetes

def test_overlays_exist():
    assert OVERLAYS == ["dev", "prod"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly_against_the_api_types(k8scheck, overlay):
    args = ["-runtime-pods", RUNTIME_PODS]
    if overlay == "prod":
        for name in PROD_EXTERNAL_SECRETS + PROD_DB_PASSWORDS + PROD_OPERATOR_SECRETS:
            args += ["-external", f"Secret/{name}"]
        for pods in PROD_OPERATOR_PODS:
            args += ["-runtime-pods", pods]
    r = run_check(k8scheck, render(overlay), *args)
    assert r.returncode == 0, f"k8scheck on k8s/overlays/{overlay}:\n{r.stdout}{r.stderr}"


def test_the_checker_is_strict(k8scheck):
    """A checker that accepts everything proves nothing: unknown fields, wrong types,
    misspelt kinds, selectors that miss their template and dangling references fail."""
    bad = {
        "unknown field": """
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
dataa: {x: "1"}
""",
        "wrong case": """
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {Type: ClusterIP, ports: [{port: 80}]}
""",
        "wrong type": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec:
  replicas: "3"
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec: {containers: [{name: a, image: a}]}
""",
        "removed API version": """
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: a}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: a}}}
""",
        "selector misses template": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: b}}
    spec: {containers: [{name: a, image: a}]}
""",
        "dangling secret": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers: [{name: a, image: a, envFrom: [{secretRef: {name: nowhere}}]}]
""",
        "probe without handler": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec: {containers: [{name: a, image: a, readinessProbe: {periodSeconds: 5}}]}
""",
        # the operator kinds, against the CRD subsets of tools/k8scheck/crds
        "misspelt operator kind": """
apiVersion: rabbitmq.com/v1beta1
kind: RabbitMQCluster
metadata: {name: a}
spec: {replicas: 3}
""",
        "unknown RabbitmqCluster field": """
apiVersion: rabbitmq.com/v1beta1
kind: RabbitmqCluster
metadata: {name: a}
spec: {replicas: 3, replica: 3}
""",
        "RabbitmqCluster replicas as a string": """
apiVersion: rabbitmq.com/v1beta1
kind: RabbitmqCluster
metadata: {name: a}
spec: {replicas: "3"}
""",
        "unknown field inside an embedded core type": """
apiVersion: rabbitmq.com/v1beta1
kind: RabbitmqCluster
metadata: {name: a}
spec: {replicas: 3, affinity: {podAntiAffinity: {required: []}}}
""",
        "MongoDBCommunity type outside its enum": """
apiVersion: mongodbcommunity.mongodb.com/v1
kind: MongoDBCommunity
metadata: {name: a}
spec:
  members: 3
  type: Sharded
  version: "7.0.14"
  users: []
""",
        "MongoDBCommunity user without its password": """
apiVersion: mongodbcommunity.mongodb.com/v1
kind: MongoDBCommunity
metadata: {name: a}
spec:
  members: 3
  type: ReplicaSet
  version: "7.0.14"
  users: [{name: a, db: a, roles: [{name: readWrite, db: a}], scramCredentialsSecretName: a}]
""",
        "bad metadata on a custom resource": """
apiVersion: mongodbcommunity.mongodb.com/v1
kind: MongoDBCommunity
metadata: {name: A_b, label: {x: y}}
spec: {members: 3, type: ReplicaSet, version: "7.0.14", users: []}
""",
    }
    for what, text in bad.items():
        r = run_check(k8scheck, text)
        assert r.returncode == 1, f"k8scheck accepted a manifest with a {what}:\n{r.stdout}"
    good = bad["dangling secret"].replace("envFrom: [{secretRef: {name: nowhere}}]", "args: [x]")
    r = run_check(k8scheck, good)
    assert r.returncode == 0, r.stdout + r.stderr
    good = bad["unknown RabbitmqCluster field"].replace(", replica: 3", "")
    r = run_check(k8scheck, good)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_limits_and_runs_as_non_root(overlay):
    problems = []
    for w in workloads(objects(overlay)):
        spec = pod_spec(w)
        psc = spec.get("securityContext", {})
        where = f"{w['kind']} {w['metadata']['name']}"
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile RuntimeDefault")
        for c in spec["containers"]:
            cw = f"{where} container {c['name']}"
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{cw}: no {probe}")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(res.get(part, {})):
                    problems.append(f"{cw}: resources.{part} needs cpu and memory")
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                problems.append(f"{cw}: runAsNonRoot")
            if (sc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
                problems.append(f"{cw}: a non-zero runAsUser")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: allowPrivilegeEscalation false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{cw}: capabilities drop ALL")
            # our own programs write nothing outside their volumes; the official mongo and
            # rabbitmq images (dev only) write at start
            if component(w) in ("service", "gateway") and sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cw}: readOnlyRootFilesystem")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_have_their_replicas_and_probe_paths(overlay):
    objs = objects(overlay)
    for name in SERVICES:
        d = workload(objs, name)
        c = pod_spec(d)["containers"][0]
        ready = "/gateway/health" if name == "gateway" else f"/{name}/ready"
        assert c["readinessProbe"]["httpGet"]["path"] == ready
        assert c["livenessProbe"]["httpGet"]["path"] == f"/{name}/health"
        if name in DOMAIN:
            assert d["spec"]["replicas"] == 3, f"{name} runs 3 replicas"
        assert d["metadata"]["namespace"] == "voter"
    for o in objs:
        if o["kind"] not in ("Namespace",):
            assert o["metadata"].get("namespace") == "voter", f"{o['kind']} {o['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_are_cluster_ip_and_the_ingress_reaches_only_the_gateway(overlay):
    objs = objects(overlay)
    for s in of_kind(objs, "Service"):
        assert s["spec"].get("type", "ClusterIP") == "ClusterIP", s["metadata"]["name"]
    ingresses = of_kind(objs, "Ingress")
    assert len(ingresses) == 1
    ing = ingresses[0]["spec"]
    assert ing["ingressClassName"] == "nginx"
    assert ing["tls"] and all(t.get("secretName") for t in ing["tls"])
    hosts = {r["host"] for r in ing["rules"]}
    assert hosts <= {h for t in ing["tls"] for h in t["hosts"]}, "every host is served over TLS"
    backends = {p["backend"]["service"]["name"] for r in ing["rules"] for p in r["http"]["paths"]}
    assert backends == {"gateway"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_lets_only_jobs_run_jobs_and_the_broker_find_its_peers(overlay):
    """jobs runs Jobs and reads pod logs; in dev the RabbitMQ nodes read the one Endpoints
    object of their headless Service (peer discovery) and nothing else. No other pod gets
    an API token; nothing is cluster-wide."""
    objs = objects(overlay)
    assert not of_kind(objs, "ClusterRole") and not of_kind(objs, "ClusterRoleBinding")
    roles = {r["metadata"]["name"]: r for r in of_kind(objs, "Role")}
    expected = {"jobs-runner": "jobs"}
    if overlay == "dev":
        expected["rabbitmq-peer-discovery"] = "rabbitmq"
    assert set(roles) == set(expected)
    granted: dict = {}
    for rule in roles["jobs-runner"]["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                granted.setdefault((group, res), set()).update(rule["verbs"])
    assert granted == JOBS_RBAC
    bindings = {b["roleRef"]["name"]: b for b in of_kind(objs, "RoleBinding")}
    assert set(bindings) == set(expected)
    for role, account in expected.items():
        assert bindings[role]["roleRef"]["kind"] == "Role"
        assert bindings[role]["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "voter"}]
    token_holders = {"jobs": "jobs"}
    if overlay == "dev":
        rabbit = named(objs, "StatefulSet", "rabbitmq")
        assert roles["rabbitmq-peer-discovery"]["rules"] == [{
            "apiGroups": [""], "resources": ["endpoints"],
            "resourceNames": [rabbit["spec"]["serviceName"]], "verbs": ["get"]}]
        token_holders["rabbitmq"] = "rabbitmq"
    for w in workloads(objs) + of_kind(objs, "Job"):
        spec, name = pod_spec(w), w["metadata"]["name"]
        if name in token_holders:
            assert spec["serviceAccountName"] == token_holders[name]
            assert spec.get("automountServiceAccountToken", True) is True, f"{name} needs its token"
        else:
            assert spec.get("automountServiceAccountToken") is False, f"{name} gets no API token"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobs_shares_a_claim_with_its_job_pods(overlay):
    objs = objects(overlay)
    jobs = named(objs, "Deployment", "jobs")
    c = pod_spec(jobs)["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["JOBS_RUNNER"] == "kubernetes"
    claim = named(objs, "PersistentVolumeClaim", env["JOBS_K8S_PVC"])
    mounted = {v["name"]: v["persistentVolumeClaim"]["claimName"]
               for v in pod_spec(jobs)["volumes"] if "persistentVolumeClaim" in v}
    work = [m for m in c["volumeMounts"] if m["mountPath"] == env["JOBS_WORK_DIR"]]
    assert work and mounted[work[0]["name"]] == claim["metadata"]["name"]
    # the Job pods' image follows the jobs image's registry and tag
    registry, _, tag = c["image"].rpartition(":")
    assert env["JOBS_K8S_IMAGE"] == registry.replace("jobs", "tabulator") + ":" + tag
    if overlay == "prod":
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "jobs pods on any node"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_isolate_the_services(overlay):
    objs = objects(overlay)
    pols = {p["metadata"]["name"]: p["spec"] for p in of_kind(objs, "NetworkPolicy")}
    deny = pols["default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny

    def allowed_from(app: str) -> list[dict]:
        peers = []
        for spec in pols.values():
            if spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == app:
                for rule in spec.get("ingress", []):
                    peers += rule["from"]
        return peers

    # only the ingress controller's namespace reaches the gateway
    assert allowed_from("gateway") == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    # the services: only pods of this namespace (never another namespace), the gateway first
    for app in ("election", "candidate", "voter", "jobs"):
        peers = allowed_from(app)
        assert peers and all(set(p) == {"podSelector"} for p in peers), app
    # MongoDB and RabbitMQ (dev: the overlay's StatefulSets; prod: the operators' pods):
    # the client port only from the four services, the rest only between their own pods
    # (and, in dev, the replica-set initialisation Job)
    if overlay == "dev":
        backing = {("app.kubernetes.io/name", "mongo"): (27017, {"mongo", "mongo-rs-init"}),
                   ("app.kubernetes.io/name", "rabbitmq"): (5672, {"rabbitmq"})}
    else:
        backing = {("app", "mongo-svc"): (27017, {"mongo-svc"}),
                   ("app.kubernetes.io/name", "rabbitmq"): (5672, {"rabbitmq"})}
    for (key, value), (client_port, own) in backing.items():
        specs = [spec for spec in pols.values() if spec["podSelector"].get("matchLabels") == {key: value}]
        assert len(specs) == 1, f"one policy for {key}={value}"
        client_rules = 0
        for rule in specs[0]["ingress"]:
            names = set()
            for p in rule["from"]:
                assert set(p) == {"podSelector"}, f"{value}: only pods of this namespace"
                sel = p["podSelector"]
                names |= set(sel.get("matchLabels", {}).values())
                for e in sel.get("matchExpressions", []):
                    assert e["operator"] == "In"
                    names |= set(e["values"])
            if names == set(DATABASES):
                client_rules += 1
                assert [p["port"] for p in rule["ports"]] == [client_port], value
            else:
                assert names and names <= own, f"{value}: peers only from its own pods, not {names}"
        assert client_rules == 1, f"{value}: one rule for the four services"
    assert pols["tabulate-isolated"]["policyTypes"] == ["Ingress", "Egress"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_autoscalers(overlay):
    objs = objects(overlay)
    budgets = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: p["spec"]
               for p in of_kind(objs, "PodDisruptionBudget")}
    assert set(SERVICES) <= set(budgets)
    if overlay == "dev":
        # a quorum (two of three) of broker nodes and replica-set members stays up
        for backing in ("mongo", "rabbitmq"):
            assert budgets[backing] == {"maxUnavailable": 1,
                                        "selector": {"matchLabels": {"app.kubernetes.io/name": backing}}}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in of_kind(objs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"gateway", "voter"}
    assert hpas["voter"]["minReplicas"] >= 3
    for name, h in hpas.items():
        assert h["scaleTargetRef"]["kind"] == workload(objs, name)["kind"] and h["maxReplicas"] > h["minReplicas"]


# --------------------------------------------------------------------------- the voter's tally shards

# Each voter process counts into its own tally shard, named by VOTER_INSTANCE: two live
# processes with one name write one shard and lose increments, and a process recounts only
# its own shard, so a restarted process must come back under its old name (docs/design.md,
# "Several replicas"; docs/operations.md, "Scaling the voter"). What the voter accepts as a
# name (instance_valid in voter/src/votes.c, stated by `voter-voter --help`):
VOTER_INSTANCE_RULE = "1-32 of A-Z a-z 0-9 . _ -"
VOTER_INSTANCE_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")
POD_NAME = {"fieldRef": {"fieldPath": "metadata.name"}}


def runs_voter(image: str) -> bool:
    """The voter's image: voter-voter (base, dev, compose) or <registry>/voter (prod,
    VOTER_IMAGE_PREFIX), whatever the tag or digest."""
    last = image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    return re.search(r"(^|-)voter$", last) is not None


def instance_env(container) -> dict | None:
    (found,) = [e for e in container.get("env", []) if e["name"] == "VOTER_INSTANCE"] or [None]
    if found and "valueFrom" in found:
        ref = dict(found["valueFrom"].get("fieldRef", {}))
        ref.pop("apiVersion", None)
        return {"fieldRef": ref} if ref else found["valueFrom"]
    return found and {"value": found.get("value", "")}


def voter_instance_problems(objs) -> list[str]:
    """Why two voter processes of these Kubernetes objects could count into one shard, or
    a process come back under another name. Only two shapes can hold: a StatefulSet whose
    pods take VOTER_INSTANCE from their name (unique, stable, and never two pods of one
    name at once), or a single process (a Deployment of one replica that is replaced, not
    surged) with a fixed name. Every name must differ from every other and be one the voter
    accepts."""
    problems, names = [], {}
    hpa_max = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"]): h["spec"]["maxReplicas"]
               for h in of_kind(objs, "HorizontalPodAutoscaler")}
    for w in objs:
        kind, name = w["kind"], w["metadata"]["name"]
        if kind == "Pod":
            spec = w["spec"]
        elif kind == "CronJob":
            spec = w["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            spec = pod_spec(w)
        else:
            continue
        for c in spec.get("initContainers", []) + spec["containers"]:
            if not runs_voter(c.get("image", "")):
                continue
            where = f"{kind} {name}, container {c['name']}"
            env = instance_env(c)
            if kind == "StatefulSet":
                if env != POD_NAME:
                    problems.append(f"{where}: VOTER_INSTANCE must be the pod name (fieldRef metadata.name), not {env}")
                    continue
                most = max(w["spec"].get("replicas", 1), hpa_max.get((kind, name), 0))
                instances = [f"{name}-{i}" for i in range(most)]
            else:
                if kind not in ("Deployment", "Pod"):
                    problems.append(f"{where}: a {kind} may run several voter processes under one name; "
                                    "use a StatefulSet")
                elif kind == "Deployment" and (w["spec"].get("replicas", 1) != 1 or (kind, name) in hpa_max):
                    problems.append(f"{where}: several replicas of a Deployment cannot have names of their own "
                                    "that survive a restart; use a StatefulSet (VOTER_INSTANCE from the pod name)")
                elif kind == "Deployment" and w["spec"].get("strategy", {}).get("type") != "Recreate":
                    problems.append(f"{where}: a rolling update runs the old and the new pod at once under one "
                                    "name; strategy Recreate")
                if env is None or "value" not in env:
                    problems.append(f"{where}: VOTER_INSTANCE must be set to a fixed name, not {env} "
                                    "(unset: the default 0, which any other voter may share)")
                    continue
                instances = [env["value"]]
            for inst in instances:
                if not VOTER_INSTANCE_NAME.fullmatch(inst):
                    problems.append(f"{where}: the voter refuses VOTER_INSTANCE {inst!r} ({VOTER_INSTANCE_RULE})")
                if inst in names:
                    problems.append(f"{where} and {names[inst]} both count into shard {inst!r}")
                names[inst] = where
    if not names:
        problems.append("no voter process found")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_voter_processes_each_count_into_their_own_shard(overlay):
    objs = objects(overlay)
    assert voter_instance_problems(objs) == []
    sts = named(objs, "StatefulSet", "voter")
    spec = sts["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["podManagementPolicy"] == "Parallel", "the pods do not wait for each other"
    assert spec.get("updateStrategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
    # the governing Service: headless, selecting the pods
    pods = named(objs, "Service", spec["serviceName"])["spec"]
    assert pods.get("clusterIP") == "None" and pods["selector"].items() <= labels.items()
    # the gateway still reaches every voter through the ClusterIP Service
    svc = named(objs, "Service", "voter")["spec"]
    assert svc.get("clusterIP") != "None" and svc["selector"].items() <= labels.items()
    gateway = container_env(pod_spec(named(objs, "Deployment", "gateway"))["containers"][0])
    assert gateway["VOTER_URL"] == "voter:8083"
    # the disruption budget and the network policy keep selecting the voter's pods
    (pdb,) = [p for p in of_kind(objs, "PodDisruptionBudget") if p["metadata"]["name"] == "voter"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert named(objs, "NetworkPolicy", "voter-from-gateway")["spec"]["podSelector"]["matchLabels"].items() \
        <= labels.items()
    docs = (ROOT / "docs" / "operations.md").read_text() + (ROOT / "docs" / "deploy.md").read_text()
    assert "VOTER_INSTANCE" in docs and "Scaling the voter" in docs


def test_the_voter_instance_check_catches_shared_shards():
    """The check above is not vacuous: each way two processes could end up in one shard
    (or a process in another shard after a restart) is caught."""
    shipped = objects("dev")

    def problems(change) -> list[str]:
        objs = copy.deepcopy(shipped)
        change(objs, named(objs, "StatefulSet", "voter"))
        return voter_instance_problems(objs)

    def drop_instance(c):
        c["env"] = [e for e in c["env"] if e["name"] != "VOTER_INSTANCE"]

    def set_instance(c, value):
        drop_instance(c)
        c["env"].append({"name": "VOTER_INSTANCE", "value": value})

    def as_deployment(w, replicas=3):
        w["kind"] = "Deployment"
        w["spec"]["replicas"] = replicas
        for field in ("serviceName", "podManagementPolicy", "updateStrategy"):
            w["spec"].pop(field, None)

    def the_deployment_of_before(objs, sts):  # three pods, all in the default shard "0"
        as_deployment(sts)
        drop_instance(pod_spec(sts)["containers"][0])

    def unique_but_not_stable(objs, sts):  # a Deployment's pod names change on every restart
        as_deployment(sts)

    def one_fixed_name(objs, sts):
        set_instance(pod_spec(sts)["containers"][0], "1")

    def a_second_voter(objs, sts, value=None, strategy="Recreate"):
        extra = copy.deepcopy(sts)
        extra["metadata"]["name"] = "voter-extra"
        as_deployment(extra, 1)
        extra["spec"]["strategy"] = {"type": strategy}
        if value is None:
            drop_instance(pod_spec(extra)["containers"][0])
        else:
            set_instance(pod_spec(extra)["containers"][0], value)
        objs.append(extra)

    def a_name_the_voter_refuses(objs, sts):
        sts["metadata"]["name"] = "a-voter-statefulset-with-a-long-name"

    cases = {
        "the Deployment of before": the_deployment_of_before,
        "a Deployment with the pod name": unique_but_not_stable,
        "a fixed name for every pod": one_fixed_name,
        "a second voter on the default": lambda o, s: a_second_voter(o, s),
        "a second voter named like a pod": lambda o, s: a_second_voter(o, s, "voter-1"),
        "a second voter named like a pod of the autoscaler": lambda o, s: a_second_voter(o, s, "voter-9"),
        "a second voter rolled with a surge": lambda o, s: a_second_voter(o, s, "extra", "RollingUpdate"),
        "a name the voter refuses": a_name_the_voter_refuses,
        "a DaemonSet": lambda o, s: s.update(kind="DaemonSet"),
    }
    for what, change in cases.items():
        assert problems(change), f"not caught: {what}"
    assert problems(lambda o, s: a_second_voter(o, s, "extra")) == [], "one more process with a name of its own"
    assert voter_instance_problems(shipped) == []


def test_the_voter_states_the_instance_rule_the_manifests_follow():
    """The names checked above are the ones the voter accepts: its --help states the rule
    (a change to instance_valid() changes the help, and this test points here)."""
    voter = harness.binary("voter")
    if not voter.exists():
        pytest.skip(f"no voter binary at {voter} (build the tree first)")
    r = subprocess.run([str(voter), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"({VOTER_INSTANCE_RULE}; default 0)" in " ".join(r.stdout.split()), r.stdout


def test_dev_brings_its_own_databases_and_prod_no_secrets():
    dev, prod = objects("dev"), objects("prod")
    assert {w["metadata"]["name"] for w in of_kind(dev, "StatefulSet")} == {"mongo", "rabbitmq", "voter"}
    assert {w["metadata"]["name"] for w in of_kind(prod, "StatefulSet")} == {"voter"}, \
        "prod uses operator-managed MongoDB/RabbitMQ"
    assert not of_kind(prod, "Secret"), "prod secrets are made beforehand, never kept in the repo"
    dev_secrets = {s["metadata"]["name"].rsplit("-", 1)[0] for s in of_kind(dev, "Secret")}
    assert set(PROD_EXTERNAL_SECRETS) <= dev_secrets
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for name in PROD_EXTERNAL_SECRETS + PROD_DB_PASSWORDS + ("voter-tls",):
        assert name in docs, f"docs/deploy.md tells how to create {name}"
    # one user-creation script for compose and the dev overlay
    assert (ROOT / "k8s/overlays/dev/init-users.js").read_text() == \
        (ROOT / "deploy/mongo/init-users.js").read_text()


def test_dev_secrets_are_generated_never_shipped():
    """The dev overlay reads its credentials from secrets/ made by scripts/secrets (git-
    ignored): without them it does not render; with them no published value appears, and
    the gateway and every service get the proof secret, the gateway its keys file."""
    bare = Path(tempfile.mkdtemp(prefix="voter-k8s-bare-"))
    shutil.copytree(ROOT / "k8s", bare / "k8s", ignore=shutil.ignore_patterns("secrets"))
    r = kustomize(bare / "k8s" / "overlays" / "dev")
    assert r.returncode != 0 and "secrets/" in r.stderr, r.stderr
    shutil.rmtree(bare)
    assert "/k8s/overlays/dev/secrets/" in (ROOT / ".gitignore").read_text().split()
    for overlay in OVERLAYS:
        text = render(overlay) + "".join(p.read_text() for p in (ROOT / "k8s").rglob("*")
                                         if p.is_file() and "secrets" not in p.parts)
        for published in PUBLISHED_SECRETS:
            assert published not in text, f"{overlay}: {published!r} is shipped"
    for overlay in OVERLAYS:
        objs = objects(overlay)
        for name in SERVICES:
            refs = {e.get("secretRef", {}).get("name")
                    for c in pod_spec(workload(objs, name))["containers"]
                    for e in c.get("envFrom", [])}
            assert any(r and r.startswith("gateway-proof") for r in refs), (overlay, name, refs)
        gw = pod_spec(named(objs, "Deployment", "gateway"))
        env = {e["name"]: e.get("value") for e in gw["containers"][0]["env"]}
        keys_mount = {m["name"]: m["mountPath"] for m in gw["containers"][0]["volumeMounts"]}["keys"]
        assert env["GATEWAY_KEYS_FILE"] == keys_mount + "/keys.json"
        (vol,) = [v for v in gw["volumes"] if v["name"] == "keys"]
        assert vol["secret"]["secretName"].startswith("gateway-keys")
    dev_keys = [s for s in of_kind(objects("dev"), "Secret") if s["metadata"]["name"].startswith("gateway-keys")]
    assert len(dev_keys) == 1 and "keys.json" in dev_keys[0]["data"]


# --------------------------------------------------------------------------- clustered backing services

RABBITMQ_SCHEMAS = Path(f"/usr/lib/rabbitmq/lib/rabbitmq_server-{harness.RABBITMQ_VERSION}/plugins")


def secret_data(objs, prefix: str) -> dict[str, str]:
    """The decoded data of the one generated Secret named <prefix>-<hash>."""
    (secret,) = [o for o in of_kind(objs, "Secret") if o["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def config_map(objs, name: str) -> dict[str, str]:
    (cm,) = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"].rsplit("-", 1)[0] == name]
    return cm["data"]


def rabbitmq_conf(text: str) -> dict[str, str]:
    conf = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key.strip() not in conf, f"{key} twice"
            conf[key.strip()] = value.strip()
    return conf


def container_env(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def headless(objs, name: str) -> dict:
    svc = named(objs, "Service", name)["spec"]
    assert svc.get("clusterIP") == "None", f"{name} is headless (one DNS name per pod)"
    assert svc.get("publishNotReadyAddresses") is True, f"{name} lists pods before they are ready"
    return svc


def test_dev_rabbitmq_is_a_three_node_cluster_formed_by_peer_discovery():
    objs = objects("dev")
    sts = named(objs, "StatefulSet", "rabbitmq")
    spec, service = sts["spec"], sts["spec"]["serviceName"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel", "after a full stop every node must start"
    headless(objs, service)
    pod = pod_spec(sts)
    (c,) = pod["containers"]
    env = container_env(c)
    # node names: the stable DNS names peer discovery hands out
    suffix = f".{service}.voter.svc.cluster.local"
    assert env["RABBITMQ_USE_LONGNAME"] == "true"
    assert env["RABBITMQ_NODENAME"] == "rabbit@$(POD_NAME)" + suffix.replace(".voter.", ".$(POD_NAMESPACE).")
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # the configuration: the k8s backend, asking for this Service's endpoints
    files = config_map(objs, "rabbitmq-config")
    conf = rabbitmq_conf(files["20-cluster.conf"])
    assert conf["cluster_formation.peer_discovery_backend"] == "rabbit_peer_discovery_k8s"
    assert conf["cluster_formation.k8s.service_name"] == service
    assert conf["cluster_formation.k8s.address_type"] == "hostname"
    assert conf["cluster_formation.k8s.hostname_suffix"] == suffix
    assert conf["cluster_formation.node_cleanup.only_log_warning"] == "true", \
        "a node that is away is never removed from the cluster (its quorum-queue replicas wait)"
    assert conf["cluster_partition_handling"] == "pause_minority"
    assert conf["queue_leader_locator"] == "balanced"
    assert conf["queue_master_locator"] == "min-masters"
    assert "rabbitmq_peer_discovery_k8s" in files["enabled_plugins"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/rabbitmq/conf.d/20-cluster.conf"]["subPath"] == "20-cluster.conf"
    assert mounts["/etc/rabbitmq/enabled_plugins"]["subPath"] == "enabled_plugins"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/rabbitmq/enabled_plugins"]["name"]]["configMap"]["name"].startswith("rabbitmq-config-")
    # one Erlang cookie for the three nodes, from the generated Secret, copied with mode 400
    cookie = volumes["erlang-cookie"]["secret"]["secretName"]
    assert cookie.startswith("rabbitmq-erlang-cookie-")
    assert len(secret_data(objs, "rabbitmq-erlang-cookie")[".erlang.cookie"]) >= 32
    (init,) = pod["initContainers"]
    assert "/var/lib/rabbitmq/.erlang.cookie" in init["command"][-1] and "chmod 400" in init["command"][-1]
    assert "RABBITMQ_ERLANG_COOKIE" not in env, "the cookie is a file, not a (deprecated) variable"
    # ready when the node accepts connections, by the broker's own diagnostics
    assert c["readinessProbe"]["exec"]["command"][0] == "rabbitmq-diagnostics"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"amqp": 5672, "management": 15672, "epmd": 4369, "dist": 25672}


def test_dev_rabbitmq_configuration_keys_exist_in_rabbitmq():
    """Every key of the cluster configuration is one RabbitMQ's own configuration schema
    knows (rabbit, peer-discovery common and k8s plugins of the local RabbitMQ, the oldest
    version the suite supports): a misspelt key stops a node at boot."""
    schemas = list(RABBITMQ_SCHEMAS.glob("*/priv/schema/*.schema"))
    if not schemas:
        pytest.skip(f"no RabbitMQ configuration schemas under {RABBITMQ_SCHEMAS}")
    patterns = []
    for f in schemas:
        for key in re.findall(r'\{mapping,\s*"([^"]+)"', f.read_text()):
            patterns.append(re.compile("^" + re.sub(r"\\\$\w+", "[^.]+", re.escape(key)) + "$"))
    conf = rabbitmq_conf(config_map(objects("dev"), "rabbitmq-config")["20-cluster.conf"])
    unknown = [k for k in conf if not any(p.match(k) for p in patterns)]
    assert not unknown, f"keys RabbitMQ {harness.RABBITMQ_VERSION} does not know: {unknown}"
    assert any(p.match("cluster_formation.k8s.hostname_suffix") for p in patterns)
    assert not any(p.match("cluster_formation.k8s.hostname_sufix") for p in patterns)


def test_dev_rabbitmq_configuration_is_accepted_by_a_real_rabbitmq():
    """The dev cluster configuration and its plugin, given to the local RabbitMQ (the
    oldest version the suite supports): the node translates it (every key and value
    valid), starts the k8s peer-discovery backend and stops there, at its first request
    to the Kubernetes API, for want of a service-account token: there is no API server
    here. A key or value RabbitMQ refuses stops it earlier, at the configuration."""
    if not (harness.RABBITMQ_SBIN / "rabbitmq-server").exists():
        pytest.skip(f"no RabbitMQ at {harness.RABBITMQ_SBIN}")
    files = config_map(objects("dev"), "rabbitmq-config")
    assert "rabbitmq_peer_discovery_k8s" in files["enabled_plugins"]

    class Node(harness.RabbitMQ):
        def env(self) -> dict:
            # the VM's crash dump (written when boot fails) stays in the run directory
            return {**super().env(), "ERL_CRASH_DUMP": str(self.run_dir / "erl_crash.dump")}

        def _prepare(self) -> None:
            super()._prepare()
            conf = self.run_dir / "rabbitmq.conf"
            conf.write_text(conf.read_text() + files["20-cluster.conf"])
            (self.run_dir / "enabled_plugins").write_text("[rabbitmq_peer_discovery_k8s].\n")

    run_dir = harness.make_run_dir("voter-k8s-rabbitmq-")
    node = Node(run_dir)
    try:
        with pytest.raises(harness.HarnessError):
            node.start(timeout=60)
        log = "".join(p.read_text(errors="replace") for p in (run_dir / "log").glob("*.log"))
    finally:
        node.stop(quiet=True)
        if node._proc is not None:  # the VM writes its crash dump while it exits
            try:
                node._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        harness.remove_run_dir(run_dir)
    assert "Configured peer discovery backend: rabbit_peer_discovery_k8s" in log, log[-3000:]
    assert "rabbit_peer_discovery_k8s:make_request" in log and "enoent" in log, log[-3000:]


def test_dev_mongo_is_a_three_member_replica_set():
    objs = objects("dev")
    sts = named(objs, "StatefulSet", "mongo")
    spec, service = sts["spec"], sts["spec"]["serviceName"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    headless(objs, service)
    pod = pod_spec(sts)
    (c,) = pod["containers"]
    args = c["args"]
    rs_name = args[args.index("--replSet") + 1]
    keyfile = args[args.index("--keyFile") + 1]
    assert rs_name == "rs0"
    # the members authenticate to each other with the generated keyfile (auth is on)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts[str(Path(keyfile).parent)] == "keyfile"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["keyfile-secret"]["secret"]["secretName"].startswith("mongo-keyfile-")
    assert len(secret_data(objs, "mongo-keyfile")["keyfile"].strip()) >= 64
    (init,) = pod["initContainers"]
    assert f"chmod 400 {keyfile}" in init["command"][-1]
    assert secret_data(objs, "mongo-secrets")["MONGO_INITDB_ROOT_PASSWORD"]
    # the Job that makes the set of the three members, idempotently
    job = named(objs, "Job", "mongo-rs-init")
    (jc,) = pod_spec(job)["containers"]
    env = container_env(jc)
    members = [f"mongo-{i}.{service}.voter.svc.cluster.local:27017" for i in range(3)]
    assert env["MONGO_RS_NAME"] == rs_name
    assert env["MONGO_RS_MEMBERS"].split(",") == members
    assert env["MONGO_INITDB_ROOT_PASSWORD"]["secretKeyRef"]["name"].startswith("mongo-secrets-")
    script = config_map(objs, "mongo-rs-init")["rs-init.js"]
    assert jc["command"][-1] == "/rs-init/rs-init.js"
    for step in ("hello(host).setName", "rs.initiate(", "rs.add(", "rs.conf().members.some("):
        assert step in script, f"rs-init.js: {step}"
    assert pod_spec(job)["restartPolicy"] == "OnFailure"


# A FAKE of mongosh's globals and of a MongoDB replica set, in Node: there is no MongoDB
# server with replica sets on this machine (FerretDB has none), so rs-init.js's decisions
# are checked against this stand-in, not against mongod. What it models: hello without
# credentials (setName, primary), rs.initiate refusing members that hold data or a set
# that exists, rs.add, members that answer late.
RS_FAKE = r"""
const vm = require("vm"), fs = require("fs");
const [script, scenario] = [fs.readFileSync(process.argv[2], "utf8"), JSON.parse(process.argv[3])];
const hosts = scenario.hosts, st = scenario.state, calls = [];
const hostOf = (uri) => uri.replace(/^mongodb:\/\/([^@]*@)?/, "").split("/")[0];
function member(host) {
  const m = st.members[host];
  if (m.downFor > 0) { m.downFor--; throw new Error(`connect ECONNREFUSED ${host}`); }
  return m;
}
function adminDb(host, authed) {
  return {
    host,
    adminCommand(cmd) {
      const m = member(host);
      if (cmd.hello) return { ok: 1, setName: m.setName || undefined, primary: m.setName ? st.primary : undefined };
      throw new Error("fake: unexpected command " + JSON.stringify(cmd));
    },
    runCommand(cmd) { return this.adminCommand(cmd); },
  };
}
class Mongo { constructor(uri) { this.host = hostOf(uri); member(this.host); } getDB() { return adminDb(this.host, false); } }
const ctx = {
  process: { env: scenario.env }, print: () => {}, JSON, Error, encodeURIComponent,
  sleep: () => { calls.push(["sleep"]); }, Mongo,
  connect(uri) {
    if (!uri.includes(`${encodeURIComponent(scenario.env.MONGO_INITDB_ROOT_USERNAME)}:`)) throw new Error("fake: no credentials");
    return adminDb(hostOf(uri), true);
  },
  rs: {
    initiate(cfg) {
      const self = ctx.db.host;
      calls.push(["initiate", JSON.parse(JSON.stringify(cfg))]);
      if (Object.values(st.members).some((m) => m.setName)) return { ok: 0, codeName: "AlreadyInitialized" };
      for (const m of cfg.members) if (m.host !== self && st.members[m.host].data) return { ok: 0, errmsg: "has data already, cannot initiate set" };
      st.members[self].setName = cfg._id; st.config = cfg; st.primary = self;
      return { ok: 1 };
    },
    conf() { if (ctx.db.host !== st.primary) throw new Error("fake: not primary"); return st.config; },
    add(doc) {
      calls.push(["add", doc.host]);
      st.config.members.push({ _id: st.config.members.length, host: doc.host });
      st.members[doc.host].setName = st.config._id;
      return { ok: 1 };
    },
  },
};
vm.createContext(ctx);
let error = null;
try { vm.runInContext(script, ctx); } catch (e) { error = e.message; }
console.log(JSON.stringify({ calls, config: st.config, error }));
"""


def run_rs_init(state: dict) -> dict:
    node = need("node")
    objs = objects("dev")
    script = config_map(objs, "mongo-rs-init")["rs-init.js"]
    env = container_env(pod_spec(named(objs, "Job", "mongo-rs-init"))["containers"][0])
    hosts = env["MONGO_RS_MEMBERS"].split(",")
    scenario = {"hosts": hosts, "state": state,
                "env": {"MONGO_RS_NAME": env["MONGO_RS_NAME"], "MONGO_RS_MEMBERS": env["MONGO_RS_MEMBERS"],
                        "MONGO_INITDB_ROOT_USERNAME": "root", "MONGO_INITDB_ROOT_PASSWORD": "p@ss/word"}}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "fake.js").write_text(RS_FAKE)
        (Path(tmp) / "rs-init.js").write_text(script)
        r = subprocess.run([node, str(Path(tmp) / "fake.js"), str(Path(tmp) / "rs-init.js"),
                            json.dumps(scenario)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_dev_rs_init_is_idempotent_against_a_fake_replica_set():
    """rs-init.js against the fake above (mongod cannot run here): a fresh set is
    initiated once on the first member and the two others added; a complete set is left
    alone; a first member that lost its data does not start a second set; a member that
    answers late is waited for."""
    hosts = [f"mongo-{i}.mongo.voter.svc.cluster.local:27017" for i in range(3)]
    fresh = {h: {"data": True, "setName": None, "downFor": 0} for h in hosts}  # users from first start
    fresh[hosts[2]]["downFor"] = 3
    out = run_rs_init({"members": fresh, "config": None, "primary": None})
    assert out["error"] is None, out
    acts = [c for c in out["calls"] if c[0] != "sleep"]
    assert acts == [["initiate", {"_id": "rs0", "members": [{"_id": 0, "host": hosts[0]}]}],
                    ["add", hosts[1]], ["add", hosts[2]]], acts
    assert [m["host"] for m in out["config"]["members"]] == hosts
    assert any(c[0] == "sleep" for c in out["calls"]), "waited for the late member"

    complete = {h: {"data": True, "setName": "rs0", "downFor": 0} for h in hosts}
    config = {"_id": "rs0", "members": [{"_id": i, "host": h} for i, h in enumerate(hosts)]}
    out = run_rs_init({"members": complete, "config": config, "primary": hosts[1]})
    assert out["error"] is None and [c for c in out["calls"] if c[0] != "sleep"] == [], out

    complete[hosts[0]] = {"data": False, "setName": None, "downFor": 0}  # a new, empty volume
    out = run_rs_init({"members": complete, "config": config, "primary": hosts[1]})
    assert not [c for c in out["calls"] if c[0] == "initiate"], "no second set on the wiped member"
    assert out["error"] is None, out


def test_dev_services_read_a_broker_list_and_a_replica_set_uri():
    """AMQP_URL: one amqp:// URL per broker node, comma-separated (the contract of
    shared/src/amqp.c); MONGODB_URI: the three members with replicaSet, the service's own
    user and database; the credentials those of the generated Secrets."""
    objs = objects("dev")
    rabbit = named(objs, "StatefulSet", "rabbitmq")["spec"]
    mongo = named(objs, "StatefulSet", "mongo")["spec"]
    broker = secret_data(objs, "rabbitmq-secrets")
    urls = secret_data(objs, "broker-secrets")["AMQP_URL"].split(",")
    assert len(urls) == rabbit["replicas"] == 3
    for i, url in enumerate(urls):
        u = urlsplit(url)
        assert u.scheme == "amqp" and u.port == 5672 and u.path == "/%2F", url
        assert u.hostname == f"rabbitmq-{i}.{rabbit['serviceName']}.voter.svc.cluster.local"
        assert (u.username, unquote(u.password)) == (broker["RABBITMQ_DEFAULT_USER"], broker["RABBITMQ_DEFAULT_PASS"])
    passwords = secret_data(objs, "mongo-secrets")
    members = container_env(pod_spec(named(objs, "Job", "mongo-rs-init"))["containers"][0])["MONGO_RS_MEMBERS"]
    for db in DATABASES:
        uri = secret_data(objs, f"{db}-secrets")["MONGODB_URI"]
        u = urlsplit(uri)
        assert u.scheme == "mongodb"
        userinfo, _, hosts = u.netloc.rpartition("@")
        assert hosts.split(",") == members.split(",") and len(hosts.split(",")) == mongo["replicas"]
        assert userinfo == f"{db}:{passwords[f'{db.upper()}_DB_PASSWORD']}"
        assert u.path == f"/{db}"
        assert parse_qs(u.query) == {"replicaSet": ["rs0"], "authSource": [db]}
        # and the service reads it
        refs = {e["secretRef"]["name"] for e in pod_spec(workload(objs, db))["containers"][0]["envFrom"]
                if "secretRef" in e}
        assert any(r.startswith(f"{db}-secrets-") for r in refs) and any(r.startswith("broker-secrets-") for r in refs)


def test_prod_expects_the_operators_and_reads_their_secrets():
    objs = objects("prod")
    (rmq,) = of_kind(objs, "RabbitmqCluster")
    assert rmq["apiVersion"] == "rabbitmq.com/v1beta1" and rmq["spec"]["replicas"] == 3
    assert "queue_leader_locator = balanced" in rmq["spec"]["rabbitmq"]["additionalConfig"]
    anti = rmq["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    (mdb,) = of_kind(objs, "MongoDBCommunity")
    assert mdb["apiVersion"] == "mongodbcommunity.mongodb.com/v1"
    assert mdb["spec"]["members"] == 3 and mdb["spec"]["type"] == "ReplicaSet"
    assert mdb["spec"]["security"]["authentication"]["modes"] == ["SCRAM"]
    users = {u["name"]: u for u in mdb["spec"]["users"]}
    assert set(users) == set(DATABASES)
    cluster, mongo = rmq["metadata"]["name"], mdb["metadata"]["name"]
    for db, u in users.items():
        assert u["db"] == db and u["roles"] == [{"name": "readWrite", "db": db}], "each user its own database only"
        assert u["passwordSecretRef"]["name"] == f"{db}-mongodb-password"
        assert u["connectionStringSecretName"] == f"{db}-mongodb-uri"
    assert set(PROD_OPERATOR_SECRETS) == {f"{cluster}-default-user"} | {u["connectionStringSecretName"] for u in users.values()}
    # the services: AMQP_URL lists the operator's three nodes with its generated user,
    # MONGODB_URI is the operator's replica-set connection string for their own user
    for db in DATABASES:
        (c,) = pod_spec(workload(objs, db))["containers"]
        env = container_env(c)
        for var, key in (("AMQP_USER", "username"), ("AMQP_PASSWORD", "password")):
            assert env[var] == {"secretKeyRef": {"name": f"{cluster}-default-user", "key": key}}
        urls = env["AMQP_URL"].split(",")
        assert urls == [f"amqp://$(AMQP_USER):$(AMQP_PASSWORD)@{cluster}-server-{i}.{cluster}-nodes.voter.svc:5672/%2F"
                        for i in range(rmq["spec"]["replicas"])]
        names = [e["name"] for e in c["env"]]
        assert names.index("AMQP_USER") < names.index("AMQP_URL") > names.index("AMQP_PASSWORD"), \
            "$(VAR) expands only variables defined before"
        assert env["MONGODB_URI"] == {"secretKeyRef": {"name": users[db]["connectionStringSecretName"],
                                                       "key": "connectionString.standard"}}
        refs = {e["secretRef"]["name"] for e in c["envFrom"] if "secretRef" in e}
        assert refs == ({"gateway-proof", "jobs-secrets"} if db == "jobs" else {"gateway-proof"}), \
            f"{db}: no other source of AMQP_URL or MONGODB_URI"
    docs = (ROOT / "docs" / "deploy.md").read_text() + (ROOT / "docs" / "operations.md").read_text()
    for needed in ("RabbitMQ Cluster Operator", "MongoDB Community Operator", "RabbitmqCluster",
                   "MongoDBCommunity", "rabbitmq-default-user", "connectionString.standard"):
        assert needed in docs, f"the docs name {needed}"


# --------------------------------------------------------------------------- compose

_compose_env: list[Path] = []


def generated_env() -> Path:
    """An env file made by `scripts/secrets compose` (what users run), outside the tree."""
    if not _compose_env:
        path = Path(tempfile.mkdtemp(prefix="voter-compose-env-")) / "env"
        r = subprocess.run([str(ROOT / "scripts" / "secrets"), "compose", str(path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert path.stat().st_mode & 0o077 == 0, "the generated .env is private"
        _compose_env.append(path)
    return _compose_env[0]


def compose_config(*files: str, env_file: str | None = "generated",
                   extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """docker-compose config with env_file "generated" (scripts/secrets compose), "example"
    (.env.example as it is) or None (nothing but PATH and extra_env)."""
    need("docker-compose")
    cmd = ["docker-compose", "--project-directory", str(ROOT)]
    if env_file == "generated":
        cmd += ["--env-file", str(generated_env())]
    elif env_file == "example":
        cmd += ["--env-file", str(ROOT / ".env.example")]
    for f in files:
        cmd += ["-f", str(ROOT / f)]
    # an empty environment apart from PATH: only defaults and the env file count
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(extra_env or {})}
    return subprocess.run(cmd + ["config"], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("files", [("docker-compose.yml",),
                                   ("docker-compose.yml", "docker-compose.test.yml")],
                         ids=["compose", "compose+test"])
def test_compose_files_parse_with_docker_compose_1_29(files):
    r = compose_config(*files)
    assert r.returncode == 0, r.stderr
    assert "WARNING" not in r.stderr, r.stderr


@pytest.mark.parametrize("env_file", [None, "example"], ids=["nothing-set", "env-example"])
def test_compose_refuses_to_start_without_its_secrets(env_file):
    r = compose_config("docker-compose.yml", env_file=env_file)
    assert r.returncode != 0, "docker-compose config succeeded without any secret"
    assert "(scripts/secrets compose)" in r.stderr, r.stderr


@pytest.mark.parametrize("secret", COMPOSE_SECRETS)
def test_compose_refuses_to_start_while_one_secret_is_empty(secret):
    """Every secret set but one, which is empty (a placeholder left as .env.example has it)."""
    values = dict(line.split("=", 1) for line in generated_env().read_text().splitlines()
                  if line and not line.startswith("#"))
    values[secret] = ""
    r = compose_config("docker-compose.yml", env_file=None, extra_env=values)
    assert r.returncode != 0 and f"set {secret} " in r.stderr, r.stderr


def test_compose_and_env_example_ship_no_secret():
    compose = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    for published in PUBLISHED_SECRETS:
        assert published not in compose and published not in example, published
    for secret in COMPOSE_SECRETS:
        assert re.search(rf"\$\{{{secret}:\?", compose), f"{secret} is required with ${{{secret}:?...}}"
        assert re.search(rf"^{secret}=$", example, re.M), f".env.example leaves {secret} empty"
    assert "/.env" in (ROOT / ".gitignore").read_text().split()
    cfg = yaml.safe_load(compose_config("docker-compose.yml").stdout)["services"]
    for name in SERVICES:
        assert len(cfg[name]["environment"]["GATEWAY_PROOF_SECRET"]) >= 32, name
    # the gateway's keys arrive through the environment, written to its tmpfs at start
    assert cfg["gateway"]["entrypoint"] == ["/usr/local/bin/gateway-keys-from-env"]
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    assert "COPY deploy/gateway/keys-from-env /usr/local/bin/gateway-keys-from-env" in dockerfile


def test_compose_publishes_only_the_gateway_and_orders_startup():
    cfg = yaml.safe_load(compose_config("docker-compose.yml").stdout)
    svcs = cfg["services"]
    assert {n for n, s in svcs.items() if s.get("ports")} == {"gateway"}
    (port,) = svcs["gateway"]["ports"]
    host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
    assert host_ip == "127.0.0.1", "published on loopback unless GATEWAY_BIND says otherwise"
    assert cfg["networks"]["backend"].get("internal") is True
    for backing in ("mongo", "rabbitmq"):
        assert set(svcs[backing]["networks"]) == {"backend"}
        assert "healthcheck" in svcs[backing]
    assert set(svcs["gateway"]["networks"]) == {"frontend"}
    for name in SERVICES:
        s = svcs[name]
        assert s["restart"] == "unless-stopped"
        assert s["build"]["dockerfile"] == f"{name}/Dockerfile"
        assert s.get("read_only") is True and s.get("cap_drop") == ["ALL"]
        deps = s.get("depends_on", {})
        if name == "gateway":
            assert {d: c["condition"] for d, c in deps.items()} == {
                n: "service_healthy" for n in ("election", "candidate", "voter", "jobs")}
        else:
            assert deps["mongo"]["condition"] == deps["rabbitmq"]["condition"] == "service_healthy"
    assert svcs["jobs"]["depends_on"]["jobs-init"]["condition"] == "service_completed_successfully"
    assert svcs["jobs"]["environment"]["JOBS_RUNNER"] == "docker"
    assert set(cfg["volumes"]) == {"mongo-data", "rabbitmq-data"}
    # one database user per service
    for name in ("election", "candidate", "voter", "jobs"):
        uri = svcs[name]["environment"]["MONGODB_URI"]
        assert uri.startswith(f"mongodb://{name}:") and uri.endswith(f"/{name}?authSource={name}")


def compose_voter_problems(services: dict) -> list[str]:
    """Why two voter processes of these compose services could count into one tally shard
    (see voter_instance_problems): compose gives the copies of a scaled service one
    environment, so each voter process is a service of its own, with a name of its own."""
    problems, names = [], {}
    for name, s in services.items():
        if not (runs_voter(s.get("image", "")) or s.get("build", {}).get("dockerfile") == "voter/Dockerfile"):
            continue
        for copies in (s.get("scale"), s.get("deploy", {}).get("replicas")):
            if copies not in (None, 1):
                problems.append(f"{name}: {copies} copies would share one VOTER_INSTANCE; add services instead")
        inst = s.get("environment", {}).get("VOTER_INSTANCE")
        if inst is None:
            problems.append(f"{name}: VOTER_INSTANCE must be set (unset: the default 0, which another may share)")
            continue
        if not VOTER_INSTANCE_NAME.fullmatch(str(inst)):
            problems.append(f"{name}: the voter refuses VOTER_INSTANCE {inst!r} ({VOTER_INSTANCE_RULE})")
        if inst in names:
            problems.append(f"{name} and {names[inst]} both count into shard {inst!r}")
        names[inst] = name
    if not names:
        problems.append("no voter service found")
    return problems


@pytest.mark.parametrize("files", [("docker-compose.yml",),
                                   ("docker-compose.yml", "docker-compose.test.yml")],
                         ids=["compose", "compose+test"])
def test_compose_voters_each_count_into_their_own_shard(files):
    services = yaml.safe_load(compose_config(*files).stdout)["services"]
    assert compose_voter_problems(services) == []
    # and the check catches a scaled voter, a second one on the same shard, a missing name
    for change in (lambda v: v.update(deploy={"replicas": 3}), lambda v: v.update(scale=2),
                   lambda v: v["environment"].pop("VOTER_INSTANCE"),
                   lambda v: v["environment"].update(VOTER_INSTANCE="voter 0")):
        changed = copy.deepcopy(services)
        change(changed["voter"])
        assert compose_voter_problems(changed), change
    changed = copy.deepcopy(services)
    changed["voter-2"] = copy.deepcopy(services["voter"])
    assert compose_voter_problems(changed), "two services on one shard"
    changed["voter-2"]["environment"]["VOTER_INSTANCE"] = "1"
    assert compose_voter_problems(changed) == [], "two services, two shards"


def test_env_example_lists_every_compose_variable():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used == listed, f"only in docker-compose.yml: {used - listed}; only in .env.example: {listed - used}"


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_is_multi_stage_non_root_and_healthchecked(name):
    text = (ROOT / name / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    assert froms == [("debian:bookworm-slim", "build"), ("debian:bookworm-slim", "")]
    runtime = text.split("\nFROM debian:bookworm-slim\n", 1)[1]
    assert "build-essential" not in runtime and "-dev" not in runtime
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert re.search(r"^HEALTHCHECK ", runtime, re.M)
    assert f"--target voter-{name}" in text


def test_dockerignore_keeps_the_context_small():
    patterns = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".run", "build", "build-*", "tests", "k8s"} <= patterns


@pytest.mark.parametrize("config", ["deploy/gateway/gateway.json", "k8s/overlays/dev/gateway.json"])
def test_shipped_gateway_configurations_load(config):
    """The gateway configurations of the images, compose and the dev overlay parse with the
    gateway of this build (upstream names point at loopback: --check resolves them)."""
    gateway = harness.binary("gateway")
    if not gateway.exists():
        pytest.skip(f"no gateway binary at {gateway} (build the tree first)")
    env = dict(os.environ, ELECTION_URL="127.0.0.1:18081", CANDIDATE_URL="127.0.0.1:18082",
               VOTER_URL="127.0.0.1:18083", JOBS_URL="127.0.0.1:18084")
    r = subprocess.run([str(gateway), "--config", str(ROOT / config), "--check"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
