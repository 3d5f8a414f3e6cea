#!/usr/bin/python3
"""A second, deliberately naive implementation of TABULATION-MULTI.md (several seats).

Written from the spec alone, sharing no code or structure with the C program: no merging
of identical rankings (every CSV row is its own ballot with its own value), every round
looks at every ballot, all amounts are Python Decimals with enough precision to be exact,
and the spec's truncations are the only roundings. The CSV reading and the ballot walk of
TABULATION.md come from reference.py (the single-winner reference), and so do the passes
of `sequential`, with the tie-break rules of TABULATION-MULTI.md §8 and cutoff_elimination
added.

Usage: reference_multi.py BALLOTS.csv RULES.json -> results JSON on stdout, exit 0 or 3.
differential_multi.py imports it and calls count() directly.
"""
import json
import math
import sys
from decimal import Decimal, ROUND_DOWN, ROUND_CEILING, ROUND_FLOOR, localcontext

import reference

UWI = reference.UWI_NAME
INACTIVE = ["exhausted_choices", "overvotes", "skipped_rankings", "repeated_rankings"]
ZERO = Decimal(0)


def trunc(x, places):
    return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)


def java_units(name):
    return name.encode("utf-16-be")  # byte order of UTF-16 BE = order of code units


def java_hash(name):
    data = java_units(name)
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h


def hashset_order(names):
    cap = 1
    want = max(int(len(names) / 0.75) + 1, 16)
    while cap < want:
        cap *= 2
    bucket = {n: (java_hash(n) ^ (java_hash(n) >> 16)) & (cap - 1) for n in names}
    return sorted(names, key=lambda n: bucket[n])  # stable: earlier order within a bucket


class Ties:
    """TABULATION-MULTI.md §8."""

    def __init__(self, rules, listed):
        self.mode = rules["tiebreak"]
        self.listed = listed
        self.rng = reference.JavaRandom(rules.get("random_seed", 0))

    def choose(self, tied, history, elect):
        """history: tallies of the earlier rounds, oldest first. Returns a name, or raises
        reference.Stop."""
        mode = self.mode
        if mode == "stop":
            raise reference.Stop("tie", tied, "elect" if elect else "eliminate")
        current = sorted(tied, key=java_units)
        looked = False
        if mode.startswith("previous_round"):
            for past in reversed(history):
                if len(current) == 1:
                    break
                if mode.endswith("random"):
                    current = hashset_order(current)
                looked = True
                pick = (max if elect else min)(past[c] for c in current)
                current = [c for c in current if past[c] == pick]
            if len(current) == 1:
                return current[0]
            mode = "random" if mode.endswith("random") else "candidate_order"
        if mode == "random":
            if not looked:
                current = sorted(current, key=java_units)
            return current[math.floor(self.rng.next_double() * len(current))]
        real = [c for c in current if c != UWI]
        if elect:
            return min(real, key=self.listed.index) if real else current[0]
        if real:
            return max(real, key=self.listed.index)
        return current[0]


class TooMany(Exception):
    """[choice] (tabulator README): more candidates at a threshold of 0 than seats."""


class Ballot:
    def __init__(self, weight, ranks):
        self.w = weight
        self.ranks = ranks
        self.v = Decimal(1)
        self.at = None        # candidate name, or None
        self.inactive = None  # category once inactive


def pct_of(rules_path):
    with open(rules_path, encoding="utf-8") as f:
        exact = json.load(f, parse_float=Decimal, parse_int=Decimal)
    return exact.get("threshold_percentage")


def count(ballots_path, rules_path):
    """Returns (exit status, results document with Decimal numbers)."""
    rules, rows, order, has_uwi, _ = reference.load(ballots_path, rules_path)
    with localcontext() as ctx:
        ctx.prec = 500
        if rules["winner_mode"] == "sequential":
            return sequential(rules, rows, order, has_uwi)
        return Multi(rules, rows, order, has_uwi, pct_of(rules_path)).run()


def as_decimal(fraction):
    return Decimal(fraction.numerator) / Decimal(fraction.denominator)


class Multi:
    def __init__(self, rules, rows, order, has_uwi, pct):
        self.rules, self.order, self.has_uwi = rules, order, has_uwi
        self.mode = rules["winner_mode"]
        self.stv = self.mode in ("multiple_winners_per_round", "one_winner_per_round")
        self.seats = rules["winners"]
        self.places = rules.get("decimal_places", 4)
        self.pct = pct
        self.listed = [c["name"] for c in rules["candidates"]]
        excluded = {c["name"] for c in rules["candidates"] if c.get("excluded")}
        self.countable = len(self.listed) - len(excluded) + (1 if has_uwi else 0)
        self.continuing = [c for c in order if c not in excluded]
        self.ballots = [Ballot(as_decimal(b["w"]), b["ranks"]) for b in rows]
        self.ties = Ties(rules, self.listed)
        self.pending_residual = {}

    def holds(self, b):
        return b.ranks and b.inactive is None

    def run(self):
        rules = self.rules
        rounds, winners, history = [], [], []
        shown = {}        # STV winners' tallies from the round after their election
        quota = None
        final = False
        status, stop = 0, None
        number = 0
        while True:
            number += 1
            moves = {}
            for b in self.ballots:
                if not self.holds(b) or b.at in self.continuing:
                    continue
                old = b.at
                if final:
                    b.inactive, b.at = "final_round_surplus", None
                else:
                    dest = reference.walk(rules, {"ranks": b.ranks}, self.continuing)
                    if dest in INACTIVE:
                        b.inactive, b.at = dest, None
                    else:
                        b.at = dest
                if old is not None and b.w * b.v > 0:
                    key = "exhausted" if b.inactive else b.at
                    moves.setdefault(old, {})
                    moves[old][key] = moves[old].get(key, ZERO) + b.w * b.v
            for w, r in self.pending_residual.items():  # §4.5: known in round r+1
                if r > 0:
                    moves.setdefault(w, {})["residual_surplus"] = r
            self.pending_residual = {}
            if rounds:
                for c, dests in moves.items():
                    entry = rounds[-1]["transfers"].setdefault(c, {})
                    for d, v in dests.items():
                        entry[d] = v
            tally = {c: ZERO for c in self.continuing}
            inactive = {k: ZERO for k in INACTIVE + ["final_round_surplus"]}
            for b in self.ballots:
                if not self.holds(b) and b.inactive:
                    inactive[b.inactive] += b.w * b.v
                elif self.holds(b):
                    tally[b.at] += b.w * b.v
            active = sum(tally.values(), ZERO)
            if number == 1 and self.mode != "bottoms_up_percentage":
                quota = self.threshold(active)
            if self.mode == "bottoms_up_percentage":
                q = active * self.pct / 100
                if number > 1 and rules.get("first_round_determines_threshold"):
                    q = rounds[0]["threshold"]
            else:
                q = quota
            full = dict(tally)
            if self.stv:
                full.update(shown)
            rnd = {"round": number, "threshold": q,
                   "tally": {c: full[c] for c in self.order if c in full},
                   "inactive": {k: inactive[k] for k in sorted(inactive)
                                if k != "final_round_surplus" or self.stv},
                   "elected": [], "eliminated": [], "transfers": {}}
            rounds.append(rnd)
            if final:
                break
            try:
                elected, eliminated = self.decide(tally, q, winners, history)
            except reference.Stop as s:
                status, stop = 3, {"tie": s}
                break
            except TooMany:
                status, stop = 3, {"error": "more candidates reach the threshold than seats"}
                break
            history.append(full)
            rnd["elected"] = [c for c in self.order if c in elected]
            rnd["eliminated"] = [c for c in self.order if c in eliminated]
            winners += rnd["elected"]
            self.continuing = [c for c in self.continuing
                               if c not in elected and c not in eliminated]
            if self.stv:
                for w in rnd["elected"]:
                    self.surplus(w, tally[w], quota, shown, rnd)
            # §4.6, §5, §6
            if self.mode == "bottoms_up_percentage":
                if elected:
                    break
                if not self.continuing:
                    status, stop = 3, {"error": "no continuing candidate left"}
                    break
                continue
            if len(winners) == len(self.listed) and self.seats > self.countable:
                break
            if len(winners) < self.seats and not self.continuing:
                if elected:
                    break
                status, stop = 3, {"error": "no continuing candidate left"}
                break
            if len(winners) < self.seats:
                continue
            if self.stv and elected:
                final = True
                continue
            break
        for rd in rounds[:-1]:
            rd["inactive"].pop("final_round_surplus", None)
        doc = {"contest": rules["contest"], "winners": winners,
               "threshold": rounds[-1]["threshold"],
               "summary": {"ballots": sum((b.w for b in self.ballots), ZERO),
                           "undervotes": sum((b.w for b in self.ballots if not b.ranks), ZERO),
                           "rounds": len(rounds)},
               "rounds": rounds}
        if stop and "tie" in stop:
            s = stop["tie"]
            doc["tie"] = {"round": len(rounds), "decision": s.decision,
                          "tied": [c for c in self.order if c in s.tied]}
        elif stop:
            doc["error"] = stop["error"]
        return status, doc

    def threshold(self, v):
        s, places = self.seats, self.places
        if self.rules.get("hare_quota"):
            return (v / s).to_integral_value(rounding=ROUND_CEILING)
        if self.rules.get("non_integer_threshold"):
            return trunc(v / (s + 1), places) + Decimal(1).scaleb(-places)
        return (v / (s + 1)).to_integral_value(rounding=ROUND_FLOOR) + 1

    def decide(self, tally, q, winners, history):
        """Returns (elected, eliminated) of the round."""
        open_seats = self.seats - len(winners)
        uwi_votes = self.has_uwi and UWI in tally and tally[UWI] > 0
        chosen = []
        if not uwi_votes and self.continuing:
            if self.mode == "bottoms_up_percentage":
                if all(tally[c] > q for c in self.continuing):
                    chosen = list(self.continuing)
            elif len(self.continuing) <= open_seats:
                chosen = list(self.continuing)
            elif self.stv:
                chosen = [c for c in self.continuing if c != UWI and tally[c] >= q]
        if self.mode == "multiple_winners_per_round" and len(chosen) > open_seats:
            raise TooMany()
        if self.mode == "one_winner_per_round" and len(chosen) > 1:
            top = max(tally[c] for c in chosen)
            tied = [c for c in chosen if tally[c] == top]
            chosen = tied if len(tied) == 1 else [self.ties.choose(tied, history, True)]
        if chosen:
            return chosen, []
        if open_seats <= 0 and self.mode != "bottoms_up_percentage":
            return [], []
        if uwi_votes:
            return [], [UWI]
        if self.rules.get("cutoff_elimination"):
            below = [c for c in self.continuing if tally[c] < q]
            if below:
                return [], below
        low = min(tally[c] for c in self.continuing)
        tied = [c for c in self.continuing if tally[c] == low]
        if len(tied) == 1:
            return [], tied
        return [], [self.ties.choose(tied, history, False)]

    def surplus(self, w, total, quota, shown, rnd):
        f = trunc((total - quota) / total, self.places) if total > quota else ZERO
        kept = ZERO
        for b in self.ballots:
            if self.holds(b) and b.at == w:
                t = trunc(b.v * f, self.places)
                kept += b.w * (b.v - t)
                b.v = t
        shown[w] = min(kept, quota)
        self.pending_residual[w] = kept - shown[w]


# ---- sequential (§7): passes of reference.py's single-winner count ----

class Pass(reference.Count):
    def __init__(self, rules, rows, order, has_uwi, ties):
        super().__init__(rules, rows, order, has_uwi)
        self.multi_ties = ties

    def tiebreak(self, tied, elect):
        return self.multi_ties.choose(tied, self.history, elect)

    def eliminations(self, tally, round_no, uwi_votes, winner):
        if not uwi_votes and self.rules.get("cutoff_elimination"):
            minimum = Decimal(str(self.rules.get("minimum_vote_threshold", 0)))
            if not (round_no == 1 and minimum > 0 and
                    [c for c in self.continuing if c != winner and tally[c] < minimum]):
                threshold = self.rounds[-1]["threshold"]
                below = [c for c in self.continuing if c != winner and tally[c] < threshold]
                if below:
                    if len(below) == len(self.continuing):
                        self.rounds[-1]["eliminated"] = [c for c in self.order if c in below]
                        raise reference.Stop("no continuing candidate left")
                    return below
        return super().eliminations(tally, round_no, uwi_votes, winner)


def sequential(rules, rows, order, has_uwi):
    listed = [c["name"] for c in rules["candidates"]]
    rounds, winners, passes = [], [], []
    status, stop = 0, None
    undervotes = sum((b["w"] for b in rows if not b["ranks"]), 0)
    for k in range(1, rules["winners"] + 1):
        excluded = dict(rules, candidates=[
            dict(c, excluded=c.get("excluded", False) or c["name"] in winners)
            for c in rules["candidates"]])
        p = Pass(excluded, rows, order, has_uwi, Ties(rules, listed))
        try:
            winner, _ = p.run()
        except reference.Stop as s:
            status, stop = 3, (k, len(p.rounds), s)
        for rd in p.rounds:
            rounds.append(dict(rd, **{"pass": k}))
        if stop:
            break
        winners.append(winner)
        passes.append({"pass": k, "winner": winner, "rounds": len(p.rounds),
                       "threshold": p.rounds[-1]["threshold"]})
    doc = {"contest": rules["contest"], "winners": winners,
           "threshold": rounds[-1]["threshold"],
           "summary": {"ballots": sum((b["w"] for b in rows), 0), "undervotes": undervotes,
                       "rounds": len(rounds)},
           "rounds": rounds, "passes": passes}
    if stop:
        k, n, s = stop
        if s.tied:
            doc["tie"] = {"pass": k, "round": n, "decision": s.decision,
                          "tied": [c for c in order if c in s.tied]}
        else:
            doc["error"] = s.reason
    for rd in rounds:
        rd["inactive"] = {key: rd["inactive"][key] for key in sorted(rd["inactive"])}
    return status, doc


def plain(x):
    """JSON text of a Decimal/Fraction/int without exponent."""
    if isinstance(x, Decimal):
        text = format(x, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    return json.dumps(x, ensure_ascii=False)


def dump(x, out):
    if isinstance(x, dict):
        out.append("{")
        for i, (k, v) in enumerate(x.items()):
            out.append(("," if i else "") + json.dumps(k, ensure_ascii=False) + ":")
            dump(v, out)
        out.append("}")
    elif isinstance(x, list):
        out.append("[")
        for i, v in enumerate(x):
            if i:
                out.append(",")
            dump(v, out)
        out.append("]")
    else:
        out.append(plain(x))


def main():
    status, doc = count(sys.argv[1], sys.argv[2])
    out = []
    dump(doc, out)
    sys.stdout.write("".join(out))
    sys.exit(status)


if __name__ == "__main__":
    main()
