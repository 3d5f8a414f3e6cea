#!/usr/bin/python3
"""A million ballots, generated at test time (never committed).

Checks that
  - the results for the million rows equal the results for the same ballots written as
    one weighted row per distinct ranking (collapsing is exact), and equal those of the
    independent reference.py on that weighted file;
  - memory does not grow with the number of rows: the peak RSS for N rows and for N/10
    rows of the same distinct rankings differ by less than 24 MiB;
and reports the reading speed next to `wc -l` on the same file in the same run.

Usage: million_rows.py TABULATE [--rows N] [--keep DIR]
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CANDIDATES = ["Brennan, Michael F.", "Carmona, Tom", "Dodge, David", "Eder, Richard A.",
              "Haskell, Ethan", "Strimling, Ethan K.", "Vail, Christopher"]
RULES = {
    "contest": "A million ballots",
    "candidates": [{"name": c} for c in CANDIDATES],
    "overvote": "always_skip_to_next_rank",
    "max_skipped_ranks": 1,
    "max_rankings": "max",
    "exhaust_on_duplicate": True,
    "tiebreak": "random",
    "random_seed": 2015,
    "labels": {"undeclared_write_in": "UWI"},
}
RANKS = 6


def csv_cell(s):
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n\r') else s


def make_protos(rng, n):
    protos = []
    for _ in range(n):
        row = []
        for _ in range(RANKS):
            x = rng.random()
            if x < 0.2:
                row.append("")
            elif x < 0.9:
                row.append(rng.choice(CANDIDATES))
            elif x < 0.95:
                row.append("|".join(rng.sample(CANDIDATES, 2)))
            else:
                row.append(rng.choice(["UWI", "overvote"]))
        protos.append(row)
    return protos


def write_rows(path, protos, rows, rng):
    """Rows drawn from protos with skewed frequencies; returns the count per proto."""
    counts = [0] * len(protos)
    weights = [1.0 / (i + 1) for i in range(len(protos))]
    picks = rng.choices(range(len(protos)), weights=weights, k=rows)
    lines = [",".join(csv_cell(c) for c in p) for p in protos]
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("id,precinct," + ",".join(f"rank{i + 1}" for i in range(RANKS)) + "\r\n")
        buf = []
        for i, k in enumerate(picks):
            counts[k] += 1
            buf.append(f"{i + 1},P{k % 17},{lines[k]}\r\n")
            if len(buf) == 65536:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
    return counts


def generate(tmp, rows):
    rng = random.Random(1103)
    protos = make_protos(rng, 300)
    counts = write_rows(os.path.join(tmp, "million.csv"), protos, rows, rng)
    write_rows(os.path.join(tmp, "tenth.csv"), protos, rows // 10, rng)
    with open(os.path.join(tmp, "weighted.csv"), "w", encoding="utf-8", newline="") as f:
        f.write("weight," + ",".join(f"rank{i + 1}" for i in range(RANKS)) + "\n")
        for p, n in zip(protos, counts):
            if n:
                f.write(f"{n}," + ",".join(csv_cell(c) for c in p) + "\n")


def run_measured(cmd):
    """Runs cmd; returns (exit code, seconds, peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if proc.returncode not in (0, 3):
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {err}")
    return proc.returncode, elapsed, usage.ru_maxrss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tabulate")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep")
    ap.add_argument("--generate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        generate(args.generate, args.rows)
        return
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {what}", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        rules = os.path.join(tmp, "rules.json")
        with open(rules, "w") as f:
            json.dump(RULES, f)
        big = os.path.join(tmp, "million.csv")
        small = os.path.join(tmp, "tenth.csv")
        weighted = os.path.join(tmp, "weighted.csv")
        t0 = time.perf_counter()
        # Generated in a child process: the peak RSS that wait4() reports for a child
        # includes what it inherited at fork, so this process must stay small.
        subprocess.run([sys.executable, __file__, "--generate", tmp, "--rows",
                        str(args.rows), "unused"], check=True)
        size = os.path.getsize(big)
        print(f"generated {args.rows} rows ({size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - t0:.1f}s")

        outs = {}
        for name, path in (("big", big), ("small", small), ("weighted", weighted)):
            outs[name] = os.path.join(tmp, f"{name}.json")
            rc, secs, rss = run_measured([args.tabulate, "--ballots", path, "--rules", rules,
                                          "--out", outs[name]])
            outs[name + "_stats"] = (rc, secs, rss)
        # wc -l on the same file, in the same run, after tabulate read it (page cache warm)
        _, wc_secs, _ = run_measured(["wc", "-l", big])
        _, again_secs, _ = run_measured([args.tabulate, "--ballots", big, "--rules", rules,
                                         "--out", outs["big"]])
        _, wc_again, _ = run_measured(["wc", "-l", big])
        ref = subprocess.run([sys.executable, os.path.join(HERE, "reference.py"), weighted,
                              rules], capture_output=True, text=True, timeout=120)
        with open(outs["big"]) as f:
            big_doc = json.load(f)
        with open(outs["weighted"]) as f:
            weighted_doc = json.load(f)
        check(big_doc["summary"]["ballots"] == args.rows, f"ballots {big_doc['summary']}")
        check(big_doc == weighted_doc, "million rows and weighted distinct rankings differ")
        check(ref.returncode in (0, 3) and json.loads(ref.stdout) == {
            k: v for k, v in weighted_doc.items()}, "reference.py disagrees")
        rc_big, _, rss_big = outs["big_stats"]
        _, _, rss_small = outs["small_stats"]
        check(rss_big - rss_small < 24 * 1024,
              f"peak RSS grows with rows: {rss_small} KiB for {args.rows // 10} rows, "
              f"{rss_big} KiB for {args.rows}")
        secs = min(outs["big_stats"][1], again_secs)
        wc = min(wc_secs, wc_again)
        print(f"tabulate: {args.rows} rows in {secs:.3f}s = {args.rows / secs / 1e6:.2f} M rows/s "
              f"({size / secs / 1e6:.0f} MB/s), peak RSS {rss_big // 1024} MiB "
              f"({rss_small // 1024} MiB for a tenth of the rows); {big_doc['summary']['rounds']}"
              f" rounds, winner {big_doc['winners']}")
        print(f"wc -l:    same file in {wc:.3f}s = {args.rows / wc / 1e6:.1f} M rows/s "
              f"({size / wc / 1e6:.0f} MB/s); tabulate/wc time ratio {secs / wc:.1f}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
