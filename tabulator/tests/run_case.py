#!/usr/bin/python3
"""Runs `tabulate` on one case directory and checks the result.

A case directory holds ballots.csv and rules.json, and one of:
  expected.json  the whole results document, compared for JSON equality
  expect.json    a subset: every member given must be there with that value (arrays
                 are compared element by element and must have the same length)
plus, optionally, `exit_code` (a number; default 0).

Usage: run_case.py TABULATE [--exact] CASE_DIR
  --exact  also require the output to be byte-for-byte the expected.json file
"""
import json
import os
import subprocess
import sys
import tempfile


def subset_mismatch(expected, actual, path="$"):
    """Returns a description of the first difference, or None."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}: member {key!r} missing"
            found = subset_mismatch(value, actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{path}: expected {expected!r}, got {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            found = subset_mismatch(e, a, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(expected) is bool or type(actual) is bool:
        ok = expected is actual
    else:
        ok = expected == actual
    return None if ok else f"{path}: expected {expected!r}, got {actual!r}"


def main():
    args = sys.argv[1:]
    exact = "--exact" in args
    args = [a for a in args if a != "--exact"]
    tabulate, case = args
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        progress = os.path.join(tmp, "progress.json")
        proc = subprocess.run(
            [tabulate, "--ballots", os.path.join(case, "ballots.csv"),
             "--rules", os.path.join(case, "rules.json"), "--out", out,
             "--progress", progress],
            capture_output=True, text=True, timeout=120)
        want_exit = 0
        if os.path.exists(os.path.join(case, "exit_code")):
            with open(os.path.join(case, "exit_code")) as f:
                want_exit = int(f.read().strip())
        if proc.returncode != want_exit:
            sys.exit(f"FAIL {case}: exit {proc.returncode}, expected {want_exit}\n"
                     f"stderr: {proc.stderr}")
        with open(out, "rb") as f:
            raw = f.read()
        actual = json.loads(raw)
        if want_exit in (0, 3):
            with open(progress) as f:
                prog = json.load(f)
            if prog != {"phase": "writing", "done": 1, "total": 1}:
                sys.exit(f"FAIL {case}: final progress {prog}")
        if os.path.exists(os.path.join(case, "expected.json")):
            with open(os.path.join(case, "expected.json"), "rb") as f:
                expected_raw = f.read()
            if json.loads(expected_raw) != actual:
                sys.exit(f"FAIL {case}: result differs from expected.json:\n"
                         f"{raw.decode()}")
            if exact and raw != expected_raw:
                sys.exit(f"FAIL {case}: same JSON but not byte-for-byte the same text")
        else:
            with open(os.path.join(case, "expect.json")) as f:
                expected = json.load(f)
            diff = subset_mismatch(expected, actual)
            if diff:
                sys.exit(f"FAIL {case}: {diff}\nresult:\n{raw.decode()}")
    print(f"ok {os.path.basename(case)}")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
