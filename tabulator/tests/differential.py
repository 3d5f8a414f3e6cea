#!/usr/bin/python3
"""Differential test: `tabulate` against reference.py on random contests.

Each contest draws its own rules (every overvote rule, skipped-rank limit, max rankings,
duplicates, write-in label, overvote label, excluded candidates, minimum threshold,
batch elimination, continue-until-two, first-round threshold, every tie-break mode with
random seeds, weights) and a small set of ballots built to produce ties. The results
documents must be equal (the "stopped" member is compared on round, decision and tied
candidates; its message is free text).

Usage: differential.py TABULATE [--contests N] [--seed S]
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["Ann", "Bob", "Cy Young", "Brennan, Michael F.", "Émile \"E\" Zola", "Fay"]


def make_contest(rng):
    n = rng.randint(1, 6)
    names = rng.sample(NAMES, n)
    overvote = rng.choice(["exhaust_immediately", "always_skip_to_next_rank",
                           "exhaust_if_multiple_continuing"])
    delimiter = rng.choice(["|", "|", "/", "+"])
    cands = []
    for i, name in enumerate(names):
        c = {"name": name}
        if rng.random() < 0.2:
            c["aliases"] = [f"alias{i}"]
        if rng.random() < 0.15:
            c["excluded"] = True
        cands.append(c)
    if all(c.get("excluded") for c in cands):
        del cands[0]["excluded"]
    rules = {
        "contest": f"Random {rng.random():.6f}",
        "candidates": cands,
        "winners": 1,
        "overvote": overvote,
        "max_skipped_ranks": rng.choice([0, 1, 2, "unlimited"]),
        "max_rankings": rng.choice([1, 2, 3, "max", "max"]),
        "exhaust_on_duplicate": rng.random() < 0.5,
        "tiebreak": rng.choice(["candidate_order", "previous_round_then_candidate_order",
                                "random", "previous_round_then_random", "stop"]),
        "random_seed": rng.randint(-2**40, 2**40),
        "batch_elimination": rng.random() < 0.4,
        "continue_until_two": rng.random() < 0.4,
        "first_round_determines_threshold": rng.random() < 0.3,
        "minimum_vote_threshold": rng.choice([0, 0, 0, 1, 2, 3.5]),
    }
    labels = {"overvote_delimiter": delimiter}
    if rng.random() < 0.4:
        labels["undeclared_write_in"] = "UWI"
    if rng.random() < 0.3:
        labels["overvote"] = "OVER"
    rules["labels"] = labels
    if rng.random() < 0.2:
        del rules["labels"]
    ov_label = rules.get("labels", {}).get("overvote", "overvote")
    uwi = rules.get("labels", {}).get("undeclared_write_in")
    delim = rules.get("labels", {}).get("overvote_delimiter", "|")

    ranks = rng.randint(1, 5)
    weighted = rng.random() < 0.3
    header = (["id"] if rng.random() < 0.7 else []) + (["weight"] if weighted else [])
    header += [f"rank{i + 1}" for i in range(ranks)]
    spellings = []
    for c in cands:
        spellings.append(c["name"])
        spellings += c.get("aliases", [])
    pool = list(range(rng.randint(1, 8)))  # few distinct ballots → many ties
    protos = []
    for _ in pool:
        row = []
        for _ in range(ranks):
            x = rng.random()
            if x < 0.25:
                row.append(rng.choice(["", " "]))
            elif x < 0.80:
                row.append(rng.choice(spellings) if rng.random() < 0.9 else
                           " " + rng.choice(spellings) + " ")
            elif x < 0.88 and len(spellings) >= 2:
                k = rng.randint(2, min(3, len(spellings)))
                row.append(delim.join(rng.sample(spellings, k)))
            elif x < 0.93 and overvote != "exhaust_if_multiple_continuing":
                row.append(ov_label)
            elif uwi:
                row.append(uwi)
            else:
                row.append(rng.choice(spellings))
        protos.append(row)
    rows = []
    for i in range(rng.randint(0, 30)):
        r = []
        if "id" in header:
            r.append(f"b{i}")
        if weighted:
            r.append(rng.choice(["1", "2", "0.5", "1.25", "3"]))
        r += rng.choice(protos)
        rows.append(r)
    return rules, header, rows


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def normalise(doc):
    stopped = doc.get("stopped")
    if stopped:
        stopped.pop("reason", None)
    return doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tabulate")
    ap.add_argument("--contests", type=int, default=300)
    ap.add_argument("--seed", type=int, default=20151103)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    failed = 0
    stats = {}
    with tempfile.TemporaryDirectory() as tmp:
        ballots = os.path.join(tmp, "ballots.csv")
        rules_path = os.path.join(tmp, "rules.json")
        out = os.path.join(tmp, "out.json")
        for i in range(args.contests):
            rules, header, rows = make_contest(rng)
            with open(rules_path, "w", encoding="utf-8") as f:
                json.dump(rules, f, ensure_ascii=False)
            with open(ballots, "w", encoding="utf-8", newline="") as f:
                w = csv.writer(f, lineterminator=rng.choice(["\n", "\r\n"]))
                w.writerow(header)
                w.writerows(rows)
            got = run([args.tabulate, "--ballots", ballots, "--rules", rules_path,
                       "--out", out])
            ref = run([sys.executable, os.path.join(HERE, "reference.py"), ballots,
                       rules_path])
            stats[got.returncode] = stats.get(got.returncode, 0) + 1
            problem = None
            if got.returncode != ref.returncode:
                problem = (f"exit {got.returncode} vs reference {ref.returncode}\n"
                           f"{got.stderr}{ref.stderr}")
            else:
                with open(out, encoding="utf-8") as f:
                    mine = normalise(json.load(f))
                theirs = normalise(json.loads(ref.stdout))
                if mine != theirs:
                    problem = (f"results differ\n--- tabulate\n{json.dumps(mine, indent=1)}"
                               f"\n--- reference\n{json.dumps(theirs, indent=1)}")
            if problem:
                failed += 1
                keep = os.path.join(tempfile.gettempdir(), f"tabulator-diff-{i}")
                os.makedirs(keep, exist_ok=True)
                for src in (ballots, rules_path):
                    with open(src, "rb") as s, open(
                            os.path.join(keep, os.path.basename(src)), "wb") as d:
                        d.write(s.read())
                print(f"contest {i} ({keep}): {problem}", file=sys.stderr)
                if failed >= 3:
                    break
    print(f"exit codes seen: {stats}")
    print(f"{args.contests - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
