#!/usr/bin/python3
"""The command line, the control file, the progress file and the exit codes.

Usage: cli.py TABULATE
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "small-irv")


def main():
    tabulate = sys.argv[1]
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {what}", file=sys.stderr)

    def run(*args, **kw):
        return subprocess.run([tabulate, *args], capture_output=True, text=True, timeout=60,
                              **kw)

    ballots = os.path.join(FIXTURE, "ballots.csv")
    rules = os.path.join(FIXTURE, "rules.json")
    with open(os.path.join(FIXTURE, "expected.json")) as f:
        expected = json.load(f)

    p = run("--help")
    check(p.returncode == 0 and "Usage: tabulate CONTROL.json" in p.stdout and
          all(o in p.stdout for o in ("--ballots", "--rules", "--out", "--progress",
                                      "Exit status")),
          f"--help: {p.returncode} {p.stdout[:200]}")
    with open(os.path.join(HERE, "..", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    block = readme.split("<!-- help:begin -->\n```\n", 1)[-1].split("```\n<!-- help:end -->")[0]
    check(block == p.stdout, "README.md's help block is not the --help output")
    p = run("--version")
    check(p.returncode == 0 and p.stdout.startswith("tabulate "), "--version")
    p = run("--bogus")
    check(p.returncode == 2 and "unknown option" in p.stderr, f"unknown option: {p.stderr}")
    p = run("--ballots", ballots, "--rules", rules)
    check(p.returncode == 2 and "--out" in p.stderr, "missing --out")
    p = run()
    check(p.returncode == 2, "no arguments")

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        prog = os.path.join(tmp, "progress.json")

        # --opt=value spelling, progress file, no stray temporary files
        p = run(f"--ballots={ballots}", f"--rules={rules}", f"--out={out}",
                f"--progress={prog}")
        with open(out) as f:
            doc = json.load(f)
        with open(prog) as f:
            progress = json.load(f)
        check(p.returncode == 0 and doc == expected, f"--opt=value run: {p.stderr}")
        check(progress == {"phase": "writing", "done": 1, "total": 1},
              f"final progress {progress}")
        check(sorted(os.listdir(tmp)) == ["out.json", "progress.json"],
              f"files left: {os.listdir(tmp)}")

        # control file with paths relative to its own directory
        work = os.path.join(tmp, "job")
        os.mkdir(work)
        for name in ("ballots.csv", "rules.json"):
            with open(os.path.join(FIXTURE, name), "rb") as s, \
                    open(os.path.join(work, name), "wb") as d:
                d.write(s.read())
        with open(os.path.join(work, "control.json"), "w") as f:
            json.dump({"ballots": "ballots.csv", "rules": "rules.json", "out": "result.json",
                       "progress": "progress.json"}, f)
        p = run(os.path.join(work, "control.json"), cwd="/")
        with open(os.path.join(work, "result.json")) as f:
            check(p.returncode == 0 and json.load(f) == expected, f"control file: {p.stderr}")

        # control file errors land in its output file, with a position
        with open(os.path.join(work, "control.json"), "w") as f:
            f.write('{"out": "result.json",\n "ballots": "ballots.csv",\n "rule": "r.json"}\n')
        p = run(os.path.join(work, "control.json"))
        with open(os.path.join(work, "result.json")) as f:
            err = json.load(f)["error"]
        check(p.returncode == 2 and err["line"] == 3 and err["column"] == 10,
              f"control unknown member: {err}")
        p = run(os.path.join(work, "control.json"), "--out", out)
        check(p.returncode == 2 and "not both" in p.stderr, "control file and options")

        # missing ballots file: exit 2 and a JSON error
        p = run("--ballots", os.path.join(tmp, "nope.csv"), "--rules", rules, "--out", out)
        with open(out) as f:
            err = json.load(f)["error"]
        check(p.returncode == 2 and "cannot open ballots" in err["message"],
              f"missing ballots: {err}")

        # unwritable output: internal error, exit 1
        p = run("--ballots", ballots, "--rules", rules, "--out",
                os.path.join(tmp, "no-such-dir", "out.json"))
        check(p.returncode == 1, f"unwritable output: exit {p.returncode}")

        # progress is rewritten while reading a large input, never torn
        big = os.path.join(tmp, "big.csv")
        with open(big, "w") as f:
            f.write("id,rank1,rank2,rank3\n")
            row = "x,A,B,C\n" * 1000
            for _ in range(2000):
                f.write(row)
        seen, torn = set(), []
        done = threading.Event()

        def watch():
            while not done.is_set():
                try:
                    with open(prog) as f:
                        text = f.read()
                except FileNotFoundError:
                    continue
                try:
                    seen.add(json.loads(text)["phase"])
                except ValueError:
                    torn.append(text)
                time.sleep(0.01)
        os.unlink(prog)
        t = threading.Thread(target=watch)
        t.start()
        p = run("--ballots", big, "--rules", rules, "--out", out, "--progress", prog)
        done.set()
        t.join()
        check(p.returncode == 0 and not torn and "reading" in seen,
              f"progress during run: exit {p.returncode}, phases {seen}, torn {torn[:1]}")
        with open(out) as f:
            check(json.load(f)["winners"] == ["A"], "big run winner")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
