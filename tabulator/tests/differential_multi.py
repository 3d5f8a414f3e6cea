#!/usr/bin/python3
"""Differential and property test of the multi-winner counts (TABULATION-MULTI.md).

Random contests — every winner_mode, seats, decimal_places from 1 to 20, hare and
non-integer thresholds, threshold percentages with decimals, cutoff_elimination, weights
with decimals, overvotes (names and label), skipped ranks, duplicates, undeclared
write-ins, excluded candidates, names whose Java (UTF-16) order differs from code-point
order, every tie-break mode with few distinct rankings so that ties happen — are counted
by `tabulate` and by reference_multi.py, and the documents must be equal number for number
(numbers compared as exact decimals). The stop message is free text; the "tie" member's
round, decision and candidates are compared.

Then, on every result of `tabulate`, properties that hold whatever the implementation:
  - conservation: in every round, tallies + inactive (final_round_surplus included) +
    the residual surpluses of earlier rounds + undervotes = ballots;
  - after a surplus round no elected candidate is shown above the threshold;
  - an STV winner's transfers (exhausted and residual surplus included) add up to its
    tally minus the threshold when a next round was counted;
  - fewer winners than seats only when every candidate that could count was elected or
    eliminated (§4.6a/b); bottoms_up_percentage elects at least one unless it stopped.

Usage: differential_multi.py TABULATE [--contests N] [--seed S]
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_multi  # noqa: E402

# Code-point order and Java's UTF-16 order differ between the last two.
NAMES = ["Ann", "Bob", "Cy Young", "Émile \"E\" Zola", "Fay", "Gus", "\U0001D538lpha",
         "\uFB01ne"]
MODES = ["multiple_winners_per_round", "multiple_winners_per_round", "one_winner_per_round",
         "bottoms_up", "bottoms_up_percentage", "sequential"]


def make_contest(rng):
    mode = rng.choice(MODES)
    n = rng.randint(2, 7)
    names = rng.sample(NAMES, n)
    overvote = rng.choice(["exhaust_immediately", "always_skip_to_next_rank",
                           "exhaust_if_multiple_continuing"])
    cands = []
    for i, name in enumerate(names):
        c = {"name": name}
        if rng.random() < 0.15:
            c["aliases"] = [f"alias{i}"]
        if rng.random() < 0.12:
            c["excluded"] = True
        cands.append(c)
    if all(c.get("excluded") for c in cands):
        del cands[0]["excluded"]
    available = sum(not c.get("excluded") for c in cands)
    places = rng.choice([1, 2, 3, 4, 4, 4, 6, 9, 12, 19, 20])
    rules = {
        "contest": f"Random {rng.random():.6f}",
        "candidates": cands,
        "winner_mode": mode,
        "overvote": overvote,
        "max_skipped_ranks": rng.choice([0, 1, 2, "unlimited"]),
        "max_rankings": rng.choice([2, 3, "max", "max"]),
        "exhaust_on_duplicate": rng.random() < 0.4,
        "tiebreak": rng.choice(["candidate_order", "previous_round_then_candidate_order",
                                "random", "previous_round_then_random", "stop"]),
        "random_seed": rng.randint(-2**40, 2**40),
        "decimal_places": places,
        "cutoff_elimination": rng.random() < (0.4 if mode == "bottoms_up_percentage" else 0.1),
    }
    if mode == "bottoms_up_percentage":
        rules["winners"] = 0
        rules["threshold_percentage"] = rng.choice(
            [1, 5, 10, 12.5, 15.555, 20, 25, 33.333333, 50, 100])
        rules["first_round_determines_threshold"] = rng.random() < 0.3
    elif mode == "sequential":
        rules["winners"] = rng.randint(2, max(2, available)) if available >= 2 else 1
        if rules["winners"] == 1:
            rules["winner_mode"] = "single_winner"
        rules["batch_elimination"] = rng.random() < 0.3
        rules["continue_until_two"] = rng.random() < 0.3
        rules["minimum_vote_threshold"] = rng.choice([0, 0, 0, 1, 2])
    else:
        rules["winners"] = rng.randint(2, n + 1)
        if mode != "bottoms_up":
            choice = rng.random()
            if choice < 0.35:
                rules["non_integer_threshold"] = True
            elif choice < 0.55:
                rules["hare_quota"] = True
    labels = {"overvote_delimiter": "|"}
    if rng.random() < 0.35:
        labels["undeclared_write_in"] = "UWI"
    rules["labels"] = labels
    uwi = labels.get("undeclared_write_in")

    ranks = rng.randint(1, 5)
    weighted = rng.random() < 0.35
    header = ["id"] + (["weight"] if weighted else []) + [f"rank{i + 1}" for i in range(ranks)]
    spellings = []
    for c in cands:
        spellings.append(c["name"])
        spellings += c.get("aliases", [])
    protos = []
    for _ in range(rng.randint(1, 12)):
        row = []
        for _ in range(ranks):
            x = rng.random()
            if x < 0.2:
                row.append("")
            elif x < 0.82:
                row.append(rng.choice(spellings))
            elif x < 0.9 and len(spellings) >= 2:
                row.append("|".join(rng.sample(spellings, 2)))
            elif x < 0.94 and overvote != "exhaust_if_multiple_continuing":
                row.append("overvote")
            elif uwi:
                row.append(uwi)
            else:
                row.append(rng.choice(spellings))
        protos.append(row)
    weights = ["1", "2", "3", "0.5", "1.5", "10"] + (["1.25", "0.75"] if places >= 2 else [])
    rows = []
    for i in range(rng.randint(0, 60)):
        r = [f"b{i}"]
        if weighted:
            r.append(rng.choice(weights))
        r += rng.choice(protos)
        rows.append(r)
    return rules, header, rows


def normalise(doc):
    if "tie" in doc:
        doc["tie"].pop("reason", None)
    if "error" in doc:
        doc["error"] = True
    return doc


def properties(rules, doc, status):
    """Returns a list of violated properties (empty when all hold)."""
    bad = []
    mode = rules["winner_mode"]
    stv = mode in ("multiple_winners_per_round", "one_winner_per_round")
    total = Decimal(str(doc["summary"]["ballots"]))
    under = Decimal(str(doc["summary"]["undervotes"]))
    residual = Decimal(0)
    elected_before = set()
    eliminated = set()
    rounds = doc["rounds"]
    for i, rd in enumerate(rounds):
        s = sum(rd["tally"].values(), Decimal(0)) + sum(rd["inactive"].values(), Decimal(0))
        if s + residual + under != total:
            bad.append(f"round {i + 1}: tallies + inactive + residual + undervotes = "
                       f"{s + residual + under}, ballots {total}")
        if stv:
            for c in elected_before:
                if rd["tally"][c] > rd["threshold"]:
                    bad.append(f"round {i + 1}: {c} elected earlier holds "
                               f"{rd['tally'][c]} > Q {rd['threshold']}")
            for w in rd["elected"]:
                moved = sum(rd["transfers"].get(w, {}).values(), Decimal(0))
                surplus = max(rd["tally"][w] - rd["threshold"], Decimal(0))
                if i + 1 < len(rounds) and moved != surplus:
                    bad.append(f"round {i + 1}: {w}'s transfers add up to {moved}, "
                               f"surplus {surplus}")
            for t in rd["transfers"].values():
                residual += t.get("residual_surplus", Decimal(0))
        elected_before |= set(rd["elected"])
        eliminated |= set(rd["eliminated"])
    if mode != "sequential" and status == 0:
        countable = {c["name"] for c in rules["candidates"] if not c.get("excluded")}
        if rules.get("labels", {}).get("undeclared_write_in"):
            countable.add(reference_multi.UWI)
        if mode == "bottoms_up_percentage":
            if not doc["winners"]:
                bad.append("bottoms_up_percentage finished without a winner")
        elif len(doc["winners"]) != rules["winners"] and \
                countable - set(doc["winners"]) - eliminated:
            bad.append(f"{len(doc['winners'])} winners for {rules['winners']} seats while "
                       f"candidates were left")
    if mode == "sequential" and status == 0 and len(doc["winners"]) != rules["winners"]:
        bad.append("sequential: one winner per pass expected")
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tabulate")
    ap.add_argument("--contests", type=int, default=500)
    ap.add_argument("--seed", type=int, default=20241105)
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
            if rules["winner_mode"] == "single_winner":
                continue
            with open(rules_path, "w", encoding="utf-8") as f:
                json.dump(rules, f, ensure_ascii=False)
            with open(ballots, "w", encoding="utf-8", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(header)
                w.writerows(rows)
            try:
                got = subprocess.run([args.tabulate, "--ballots", ballots, "--rules",
                                      rules_path, "--out", out],
                                     capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                got = subprocess.CompletedProcess([], -1, "", "timed out after 60 s")
            status, theirs = reference_multi.count(ballots, rules_path)
            key = (rules["winner_mode"], got.returncode)
            stats[key] = stats.get(key, 0) + 1
            problem = None
            if got.returncode != status:
                problem = f"exit {got.returncode} vs reference {status}\n{got.stderr}"
            else:
                with open(out, encoding="utf-8") as f:
                    mine = json.load(f, parse_float=Decimal, parse_int=Decimal)
                bad = properties(rules, mine, got.returncode)
                if bad:
                    problem = "properties:\n  " + "\n  ".join(bad)
                elif normalise(mine) != normalise(theirs):
                    text = []
                    reference_multi.dump(theirs, text)
                    problem = (f"results differ\n--- tabulate\n{json.dumps(mine, default=str)}"
                               f"\n--- reference\n{''.join(text)}")
            if problem:
                failed += 1
                keep = os.path.join(tempfile.gettempdir(), f"tabulator-multi-diff-{i}")
                os.makedirs(keep, exist_ok=True)
                for src in (ballots, rules_path):
                    with open(src, "rb") as s, open(
                            os.path.join(keep, os.path.basename(src)), "wb") as d:
                        d.write(s.read())
                print(f"contest {i} ({keep}): {problem}", file=sys.stderr)
                if failed >= 3:
                    break
    total = sum(stats.values())
    print("mode, exit code: contests")
    for key in sorted(stats):
        print(f"  {key[0]}, {key[1]}: {stats[key]}")
    print(f"{total - failed} passed, {failed} failed")
    sys.exit(1 if failed or total < args.contests * 0.9 else 0)


if __name__ == "__main__":
    main()
