"""Deployment manifests, checked offline: the Kubernetes overlays render with
`kubectl kustomize`, every rendered object decodes strictly into its Kubernetes API type
(tools/k8scheck, built from k8s.io/api through the Go module proxy, cached in
/opt/voter-tools/bin), the suite's own policies hold (probes, limits, non-root, ClusterIP
only, ingress to the gateway, minimal RBAC, network isolation), and docker-compose.yml
parses with Debian's docker-compose 1.29 and follows the same rules.

No cluster and no Docker engine are needed."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

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
# What the prod overlay expects to exist before `kubectl apply` (docs/deploy.md).
PROD_EXTERNAL_SECRETS = ("broker-secrets", "election-secrets", "candidate-secrets",
                         "voter-secrets", "jobs-secrets", "gateway-proof", "gateway-keys",
                         "gateway-config")
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


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def component(workload) -> str:
    return workload["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component", "")


def checker_stamp() -> str:
    """Hash of the checker's sources: a stale cached binary is rebuilt."""
    h = hashlib.sha256()
    for f in sorted(CHECKER_SRC.glob("*.go")) + [CHECKER_SRC / "go.mod", CHECKER_SRC / "go.sum"]:
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
        for name in PROD_EXTERNAL_SECRETS:
            args += ["-external", f"Secret/{name}"]
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
    }
    for what, text in bad.items():
        r = run_check(k8scheck, text)
        assert r.returncode == 1, f"k8scheck accepted a manifest with a {what}:\n{r.stdout}"
    good = bad["dangling secret"].replace("envFrom: [{secretRef: {name: nowhere}}]", "args: [x]")
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
        d = named(objs, "Deployment", name)
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
def test_rbac_lets_only_jobs_run_jobs_and_read_pod_logs(overlay):
    objs = objects(overlay)
    assert not of_kind(objs, "ClusterRole") and not of_kind(objs, "ClusterRoleBinding")
    roles = of_kind(objs, "Role")
    assert [r["metadata"]["name"] for r in roles] == ["jobs-runner"]
    granted: dict = {}
    for rule in roles[0]["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                granted.setdefault((group, res), set()).update(rule["verbs"])
    assert granted == JOBS_RBAC
    (binding,) = of_kind(objs, "RoleBinding")
    assert binding["roleRef"]["name"] == "jobs-runner"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "jobs", "namespace": "voter"}]
    for w in workloads(objs):
        spec = pod_spec(w)
        if w["metadata"]["name"] == "jobs":
            assert spec["serviceAccountName"] == "jobs"
        else:
            assert spec.get("automountServiceAccountToken") is False, \
                f"{w['metadata']['name']} gets no API token"


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
    backing = {"mongo", "rabbitmq"} & {w["metadata"]["name"] for w in workloads(objs)}
    if overlay == "dev":
        assert backing == {"mongo", "rabbitmq"}
    for app in backing:
        (peer,) = allowed_from(app)
        (expr,) = peer["podSelector"]["matchExpressions"]
        assert expr["operator"] == "In" and set(expr["values"]) == {"election", "candidate", "voter", "jobs"}
    assert pols["tabulate-isolated"]["policyTypes"] == ["Ingress", "Egress"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_autoscalers(overlay):
    objs = objects(overlay)
    pdbs = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for p in of_kind(objs, "PodDisruptionBudget")}
    assert set(SERVICES) <= pdbs
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in of_kind(objs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"gateway", "voter"}
    assert hpas["voter"]["minReplicas"] >= 3
    for h in hpas.values():
        assert h["scaleTargetRef"]["kind"] == "Deployment" and h["maxReplicas"] > h["minReplicas"]


def test_dev_brings_its_own_databases_and_prod_no_secrets():
    dev, prod = objects("dev"), objects("prod")
    assert {w["metadata"]["name"] for w in of_kind(dev, "StatefulSet")} == {"mongo", "rabbitmq"}
    assert not of_kind(prod, "StatefulSet"), "prod uses operator-managed or external MongoDB/RabbitMQ"
    assert not of_kind(prod, "Secret"), "prod secrets are made beforehand, never kept in the repo"
    dev_secrets = {s["metadata"]["name"].rsplit("-", 1)[0] for s in of_kind(dev, "Secret")}
    assert set(PROD_EXTERNAL_SECRETS) <= dev_secrets
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for name in PROD_EXTERNAL_SECRETS + ("voter-tls",):
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
                    for c in pod_spec(named(objs, "Deployment", name))["containers"]
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
