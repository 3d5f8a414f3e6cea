#!/usr/bin/python3
"""A second, deliberately naive implementation of TABULATION.md (single winner).

It shares no code and no structure with the C program: no collapsing, no incremental
lists; every round looks at every ballot, weights are exact Fractions. differential.py
runs both on random contests and compares the results document field by field.

Usage: reference.py BALLOTS.csv RULES.json  -> results JSON on stdout, exit 0 or 3.
Only valid input is supported (the differential test generates valid input).
"""
import csv
import json
import math
import sys
from fractions import Fraction

UWI_NAME = "Undeclared Write-ins"
INACTIVE = ["exhausted_choices", "overvotes", "skipped_rankings", "repeated_rankings"]


class JavaRandom:
    """java.util.Random: 48-bit LCG."""

    def __init__(self, seed):
        self.seed = (seed ^ 0x5DEECE66D) & ((1 << 48) - 1)

    def next(self, bits):
        self.seed = (self.seed * 0x5DEECE66D + 0xB) & ((1 << 48) - 1)
        return self.seed >> (48 - bits)

    def next_double(self):
        return ((self.next(26) << 27) + self.next(27)) * (1.0 / (1 << 53))


class Stop(Exception):
    def __init__(self, reason, tied=None, decision=None):
        super().__init__(reason)
        self.reason, self.tied, self.decision = reason, tied, decision


def load(ballots_path, rules_path):
    with open(rules_path, encoding="utf-8") as f:
        rules = json.load(f)
    labels = rules.get("labels", {})
    ov_label = labels.get("overvote", "overvote")
    uwi_label = labels.get("undeclared_write_in")
    delim = labels.get("overvote_delimiter", "|")
    names = {}
    order = []  # display order: listed candidates, then the write-in pseudo-candidate
    for c in rules["candidates"]:
        order.append(c["name"])
        names[c["name"]] = c["name"]
        for a in c.get("aliases", []):
            names[a] = c["name"]
    if uwi_label is not None:
        order.append(UWI_NAME)
        names[uwi_label] = UWI_NAME
    dp = rules.get("decimal_places", 4)
    ballots = []
    with open(ballots_path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    for row in rows[1:]:
        weight = Fraction(1)
        ranks = []
        for h, cell in zip(header, row):
            if h == "weight":
                weight = Fraction(cell.strip())
            elif h.startswith("rank"):
                n = int(h[4:])
                cell = cell.strip()
                if rules["max_rankings"] != "max" and n > rules["max_rankings"]:
                    continue
                if cell == "":
                    continue
                if cell in names:
                    ranks.append((n, [names[cell]]))
                elif cell == ov_label:
                    ranks.append((n, None))  # overvote, names unknown
                else:
                    parts = sorted({names[p.strip()] for p in cell.split(delim)})
                    ranks.append((n, parts))
        ballots.append({"w": weight, "ranks": ranks})
    return rules, ballots, order, uwi_label is not None, dp


def walk(rules, ballot, continuing):
    """Returns a candidate name or an inactive category (TABULATION.md, steps 1-5)."""
    max_skipped = rules["max_skipped_ranks"]
    last = 0
    seen = set()
    ranks = ballot["ranks"]
    for i, (n, marks) in enumerate(ranks):
        is_last = i == len(ranks) - 1
        if max_skipped != "unlimited" and n - last > max_skipped + 1:
            return "skipped_rankings"
        last = n
        if rules.get("exhaust_on_duplicate", False):
            here = set(marks or [])
            if here & seen:
                return "repeated_rankings"
            seen |= here
        if marks is None or len(marks) > 1:
            rule = rules["overvote"]
            if rule == "exhaust_immediately":
                return "overvotes"
            if rule == "exhaust_if_multiple_continuing":
                cont = [m for m in marks if m in continuing]
                if len(cont) >= 2:
                    return "overvotes"
                if len(cont) == 1:
                    return cont[0]
            if is_last:
                return "exhausted_choices"
            continue
        if marks[0] in continuing:
            return marks[0]
        if is_last:
            return "exhausted_choices"
    return "exhausted_choices"


def num(x):
    return int(x) if x.denominator == 1 else float(x)


class Count:
    def __init__(self, rules, ballots, order, has_uwi):
        self.rules, self.ballots, self.order, self.has_uwi = rules, ballots, order, has_uwi
        excluded = {c["name"] for c in rules["candidates"] if c.get("excluded")}
        self.continuing = [c for c in order if c not in excluded]
        self.rng = JavaRandom(rules.get("random_seed", 0))
        self.history = []  # tallies of finished rounds
        self.rounds = []

    def listed_index(self, c):
        # candidate_order: the pseudo-candidate counts as listed before everyone
        return -1 if c == UWI_NAME else self.order.index(c)

    def draw(self, tied):
        tied = sorted(tied)  # by name (code point order == UTF-8 byte order)
        return tied[math.floor(self.rng.next_double() * len(tied))]

    def tiebreak(self, tied, elect):
        mode = self.rules["tiebreak"]
        if mode == "stop":
            raise Stop("tie", tied, "elect" if elect else "eliminate")
        if mode.startswith("previous_round"):
            remaining = list(tied)
            for past in reversed(self.history):
                if len(remaining) == 1:
                    break
                vals = [past[c] for c in remaining]
                if len(set(vals)) > 1:
                    pick = max(vals) if elect else min(vals)
                    remaining = [c for c in remaining if past[c] == pick]
            if len(remaining) == 1:
                return remaining[0]
            tied = remaining
            mode = "random" if mode.endswith("random") else "candidate_order"
        if mode == "random":
            return self.draw(tied)
        key = sorted(tied, key=self.listed_index)
        return key[0] if elect else key[-1]

    def run(self):
        rules = self.rules
        where = [None] * len(self.ballots)
        undervotes = sum((b["w"] for b in self.ballots if not b["ranks"]), Fraction(0))
        winner = None
        frozen = None
        round_no = 0
        eliminated_last = []
        while True:
            round_no += 1
            transfers = {e: {} for e in eliminated_last}
            for i, b in enumerate(self.ballots):
                if not b["ranks"]:
                    continue
                old = where[i]
                if old is not None and (old in INACTIVE or old in self.continuing):
                    continue
                new = walk(rules, b, self.continuing)
                where[i] = new
                if old is not None:
                    dest = "exhausted" if new in INACTIVE else new
                    transfers[old][dest] = transfers[old].get(dest, 0) + b["w"]
            if self.rounds:
                self.rounds[-1]["transfers"] = {
                    e: dict([(c, num(transfers[e][c])) for c in self.order
                             if transfers[e].get(c)] +
                            [("exhausted", num(transfers[e].get("exhausted", Fraction(0))))])
                    for e in self.order if e in transfers}
            tally = {c: Fraction(0) for c in self.continuing}
            inactive = {k: Fraction(0) for k in INACTIVE}
            for i, b in enumerate(self.ballots):
                if where[i] in tally:
                    tally[where[i]] += b["w"]
                elif where[i] in inactive:
                    inactive[where[i]] += b["w"]
            active = sum(tally.values(), Fraction(0))
            threshold = math.floor(active / 2) + 1
            if frozen is not None:
                threshold = frozen
            elif rules.get("first_round_determines_threshold") and self.rounds:
                threshold = self.rounds[0]["threshold"]
            rnd = {"round": round_no, "threshold": threshold,
                   "tally": {c: num(tally[c]) for c in self.order if c in tally},
                   "inactive": {k: num(v) for k, v in inactive.items()},
                   "elected": [], "eliminated": [], "transfers": {}}
            self.rounds.append(rnd)
            uwi_votes = self.has_uwi and UWI_NAME in tally and tally[UWI_NAME] > 0
            eliminated_last = []
            if winner is None:
                w = None
                real = [c for c in self.continuing if c != UWI_NAME]
                if not uwi_votes:
                    for c in real:
                        if tally[c] >= threshold:
                            w = c
                    if w is None and len(self.continuing) == 2:
                        if len(real) == 1:
                            w = real[0]
                        else:
                            a, b = real
                            if tally[a] != tally[b]:
                                w = a if tally[a] > tally[b] else b
                            else:
                                w = self.tiebreak([a, b], elect=True)
                    elif w is None and len(self.continuing) == 1 and real:
                        w = real[0]
                if w is not None:
                    winner = w
                    rnd["elected"] = [w]
                    if not rules.get("continue_until_two") or len(self.continuing) <= 2:
                        break
                    frozen = threshold
                    self.history.append(tally)
                    continue
            elif len(self.continuing) <= 2:
                break
            out = self.eliminations(tally, round_no, uwi_votes, winner)
            rnd["eliminated"] = [c for c in self.order if c in out]
            self.continuing = [c for c in self.continuing if c not in out]
            eliminated_last = out
            self.history.append(tally)
        return winner, undervotes

    def eliminations(self, tally, round_no, uwi_votes, winner):
        rules = self.rules
        cands = [c for c in self.continuing if c != winner]
        if uwi_votes:
            return [UWI_NAME]
        minimum = Fraction(str(rules.get("minimum_vote_threshold", 0)))
        if round_no == 1 and minimum > 0:
            low = [c for c in cands if tally[c] < minimum]
            if low:
                if not [c for c in self.continuing if c not in low and c != UWI_NAME]:
                    raise Stop("minimum")
                return low
        if rules.get("batch_elimination"):
            ordered = sorted(self.continuing, key=lambda c: tally[c])
            best = []
            for i in range(2, len(ordered)):
                group = ordered[:i]
                if winner in group:
                    break
                if sum((tally[c] for c in group), Fraction(0)) < tally[ordered[i]]:
                    if rules.get("continue_until_two") and len(ordered) - i < 2:
                        continue
                    best = group
            if len(best) >= 2:
                return best
        lowest = min(tally[c] for c in cands)
        tied = [c for c in cands if tally[c] == lowest]
        if len(tied) == 1:
            return tied
        return [self.tiebreak(tied, elect=False)]


def main():
    rules, ballots, order, has_uwi, _ = load(sys.argv[1], sys.argv[2])
    count = Count(rules, ballots, order, has_uwi)
    status = 0
    stopped = None
    try:
        winner, undervotes = count.run()
        winners = [winner]
    except Stop as s:
        status = 3
        winners = []
        undervotes = sum((b["w"] for b in ballots if not b["ranks"]), Fraction(0))
        stopped = {"round": len(count.rounds)}
        if s.tied:
            stopped["decision"] = s.decision
            stopped["tied"] = [c for c in order if c in s.tied]
    doc = {"contest": rules["contest"], "winners": winners,
           "summary": {"ballots": num(sum((b["w"] for b in ballots), Fraction(0))),
                       "undervotes": num(undervotes), "rounds": len(count.rounds)},
           "rounds": count.rounds}
    if stopped:
        doc["stopped"] = stopped
    json.dump(doc, sys.stdout, indent=1, ensure_ascii=False)
    sys.exit(status)


if __name__ == "__main__":
    main()
