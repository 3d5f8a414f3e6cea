"""Docs stay true: the OpenAPI document matches its generator and every documented path of
a running service is routed; every environment variable a service reads is in its --help."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import requests

import harness

ROOT = harness.repo_root()
SERVICES = ["election", "candidate", "voter", "jobs", "gateway"]


def built(name):
    return harness.binary(name).exists()


def test_openapi_json_matches_its_generator(tmp_path):
    generated = subprocess.run(["/usr/bin/python3", "-c",
                                "import json, runpy; d = runpy.run_path('docs/openapi.py')['doc']; print(json.dumps(d, indent=1))"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(generated) == json.loads((ROOT / "docs" / "openapi.json").read_text()), \
        "docs/openapi.json is stale: run docs/openapi.py"


@pytest.mark.parametrize("name", SERVICES)
def test_help_lists_every_environment_variable_read(name):
    if not built(name):
        pytest.skip(f"{name} is not built in {harness.build_dir()}")
    sources = list((ROOT / name / "src").glob("*.c"))
    names = set()
    for src in sources:
        names |= set(re.findall(r'cfg_(?:str|long|bool)\(\s*"([A-Z0-9_]+)"', src.read_text()))
    out = subprocess.run([str(harness.binary(name)), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    missing = sorted(n for n in names if n not in out.stdout)
    assert not missing, f"voter-{name} --help does not mention {missing}"


SAMPLE = {"{id}": "0123456789abcdef01234567", "{election}": "Some%20Election"}


@pytest.mark.parametrize("name", ["election", "voter"])
def test_every_documented_path_is_routed(service_factory, name):
    svc = service_factory(name)
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text())
    checked = 0
    for path, methods in doc["paths"].items():
        if not path.startswith(f"/{name}/"):
            continue
        url = svc.url + path
        for k, v in SAMPLE.items():
            url = url.replace(k, v)
        for method in methods:
            if method in ("post", "put", "patch") and "drop" in path:
                continue  # destructive, and covered by the service suites
            if path.endswith("/stream"):
                continue  # an endless event stream, covered by tests/test_web.py
            r = requests.request(method.upper(), url, json={}, timeout=10)
            assert r.status_code != 405, f"{method.upper()} {path} is documented but not allowed"
            if r.status_code == 404:
                assert r.json().get("detail") != "no resource at this path", f"{method.upper()} {path} is not routed"
            checked += 1
    assert checked > 10
