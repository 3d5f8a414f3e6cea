#!/usr/bin/python3
"""CSV edge cases through the whole program: quotes, CRLF, CR, BOM, no final line end,
empty file, header only, blank cells with spaces, a multi-line quoted id, standard input.

Each variant encodes the same five ballots (Ann 3, the quoted "Smith, Joe" name 2) and must give
the same round-1 tally; the error variants must give exit 2 and the right position.

Usage: csv_edges.py TABULATE
"""
import json
import os
import subprocess
import sys
import tempfile

JOE = 'Smith, Joe "JJ"'
RULES = {
    "contest": "CSV edges",
    "candidates": [{"name": "Ann"}, {"name": JOE}],
    "overvote": "exhaust_immediately",
    "max_skipped_ranks": "unlimited",
    "max_rankings": "max",
    "tiebreak": "candidate_order",
}
JOE_Q = '"Smith, Joe ""JJ"""'
ROWS = ["1,Ann,", f"2,{JOE_Q},Ann", "3, Ann ,", f'"4\nwith a line break",{JOE_Q},', "5,Ann,"]
GOOD = {
    "lf": "id,rank1,rank2\n" + "\n".join(ROWS) + "\n",
    "crlf": "id,rank1,rank2\r\n" + "\r\n".join(ROWS) + "\r\n",
    "cr": "id,rank1,rank2\r" + "\r".join(ROWS) + "\r",
    "bom": "\ufeffid,rank1,rank2\n" + "\n".join(ROWS) + "\n",
    "bom_crlf_no_final_newline": "\ufeffid,rank1,rank2\r\n" + "\r\n".join(ROWS),
    "quoted_header_and_cells": '"id","rank1","rank2"\n' + "\n".join(ROWS) + "\n",
    "mixed_line_ends": "id,rank1,rank2\r\n" + "\n".join(ROWS[:3]) + "\r\n" +
                       "\r\n".join(ROWS[3:]) + "\n",
}
ERRORS = {  # name: (content, line, column)
    "empty_file": ("", 1, 1),
    "only_bom": ("\ufeff", 1, 1),
    "bare_quote": ('id,rank1,rank2\n1,An"n,\n', 2, 2),
    "unclosed_quote": ('id,rank1,rank2\n1,Ann,\n2,"Ann,\n3,Ann,\n', 3, 2),
    "text_after_quote": ('id,rank1,rank2\n1,"Ann"x,\n', 2, 2),
    "unknown_after_multiline": ('id,rank1,rank2\n"a\nb\nc",Ann,\n2,Bob,\n', 5, 2),
    "too_many_fields": ("id,rank1,rank2\n1,Ann,,\n", 2, 4),
}


def run(tabulate, tmp, content, stdin=False):
    ballots = os.path.join(tmp, "ballots.csv")
    with open(ballots, "w", encoding="utf-8", newline="") as f:
        f.write(content)
    out = os.path.join(tmp, "out.json")
    if os.path.exists(out):
        os.unlink(out)
    cmd = [tabulate, "--ballots", "-" if stdin else ballots,
           "--rules", os.path.join(tmp, "rules.json"), "--out", out]
    with open(ballots, "rb") as f:
        proc = subprocess.run(cmd, stdin=f if stdin else subprocess.DEVNULL,
                              capture_output=True, timeout=60)
    with open(out, encoding="utf-8") as f:
        return proc.returncode, json.load(f)


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

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "rules.json"), "w", encoding="utf-8") as f:
            json.dump(RULES, f)
        for name, content in GOOD.items():
            for stdin in (False, True):
                rc, doc = run(tabulate, tmp, content, stdin)
                tally = doc.get("rounds", [{}])[0].get("tally")
                check(rc == 0 and tally == {"Ann": 3, JOE: 2} and doc["winners"] == ["Ann"]
                      and doc["summary"]["ballots"] == 5,
                      f"{name} (stdin={stdin}): exit {rc}, {doc}")
        rc, doc = run(tabulate, tmp, "id,rank1,rank2\n")
        check(rc == 0 and doc["summary"] == {"ballots": 0, "undervotes": 0, "rounds": 1}
              and doc["rounds"][0]["tally"] == {"Ann": 0, JOE: 0},
              f"header only: exit {rc}, {doc}")
        rc, doc = run(tabulate, tmp, "id,rank1,rank2\n1,,\n2, , \t\n3,Ann,\n")
        check(rc == 0 and doc["summary"]["undervotes"] == 2, f"blank cells: {doc}")
        for name, (content, line, column) in ERRORS.items():
            rc, doc = run(tabulate, tmp, content)
            err = doc.get("error", {})
            check(rc == 2 and err.get("line") == line and err.get("column") == column
                  and err.get("message"),
                  f"{name}: exit {rc}, {doc} (expected {line}:{column})")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
