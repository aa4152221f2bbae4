#!/usr/bin/env python3
"""Checks that two systems' outputs of the user-spend job answer the same question.

usage: bench_peers_check.py KAPPA_ROWS PEER_ROWS [--ignore-key K]...

Each file holds one JSON row per line ({key, window_start, window_end, count, sum, min, max,
avg}), as read from an output topic. A row is identified by (key, window_start, window_end); the
last row of an identity wins (a duplicate after a retry is the same row). Equal means: the same
identities, and for each the same count, sum, min, max, and avg within 1e-9 relative. Prints a
summary line; exits 1 with the first differences when they differ.
"""
import json
import sys


def load(path, ignore):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r["key"] in ignore:
                continue
            rows[(r["key"], int(r["window_start"]), int(r["window_end"]))] = r
    return rows


def main():
    args = sys.argv[1:]
    ignore = set()
    files = []
    while args:
        a = args.pop(0)
        if a == "--ignore-key":
            ignore.add(args.pop(0))
        else:
            files.append(a)
    if len(files) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = load(files[0], ignore), load(files[1], ignore)
    diffs = []
    for k in sorted(a.keys() - b.keys())[:5]:
        diffs.append(f"only in {files[0]}: {a[k]}")
    for k in sorted(b.keys() - a.keys())[:5]:
        diffs.append(f"only in {files[1]}: {b[k]}")
    mismatched = 0
    for k in sorted(a.keys() & b.keys()):
        x, y = a[k], b[k]
        bad = [f for f in ("count", "sum", "min", "max") if int(x[f]) != int(y[f])]
        ax, ay = float(x["avg"]), float(y["avg"])
        if abs(ax - ay) > 1e-9 * max(abs(ax), abs(ay)):
            bad.append("avg")
        if bad:
            mismatched += 1
            if mismatched <= 5:
                diffs.append(f"{k}: {','.join(bad)} differ: {x} vs {y}")
    only_a, only_b = len(a.keys() - b.keys()), len(b.keys() - a.keys())
    summary = (f"rows: {len(a)} vs {len(b)}; only in first {only_a}, only in second {only_b}, "
               f"values differ {mismatched}")
    if diffs or only_a or only_b or mismatched or not a:
        print("DIFFERENT: " + summary + (" (no rows)" if not a else ""))
        for d in diffs:
            print("  " + d)
        return 1
    print("EQUAL: " + summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
