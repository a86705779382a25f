#!/usr/bin/env python3
"""Turns results.jsonl into the comparison table (medians over passes) with the ratios."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = defaultdict(list)
acc = defaultdict(list)
for r in rows:
    key = (r["impl"].split()[0], r["workload"], r["threads"])
    runs[key].append(r["samples_per_sec"])
    acc[key].append(r["test_accuracy"])
impls = sorted({k[0] for k in runs}, key=lambda i: ["gradus", "ndarray-baseline", "pytorch"].index(i) if i in ["gradus", "ndarray-baseline", "pytorch"] else 9)
names = {r["impl"].split()[0]: r["impl"] for r in rows}
med = {k: statistics.median(v) for k, v in runs.items()}
cols = [(w, t) for w in ("w1", "w2") for t in ("1", "2")]
print("| implementation | " + " | ".join(f"{w.upper()} {t} thread{'s' if t == '2' else ''}" for w, t in cols) + " | test accuracy after 3 epochs (W1 / W2) |")
print("| --- | " + " | ".join("---:" for _ in cols) + " | ---: |")
for i in impls:
    cells = [f"{med[(i, w, t)] / 1000:.1f}k" if (i, w, t) in med else "-" for w, t in cols]
    accs = [f"{100 * statistics.median(acc[(i, w, '1')]):.2f}%" if (i, w, "1") in acc else "-" for w in ("w1", "w2")]
    print(f"| {names[i]} | " + " | ".join(cells) + f" | {' / '.join(accs)} |")
print()
def ratio(a, b, w, t):
    if (a, w, t) in med and (b, w, t) in med:
        return f"{med[(a, w, t)] / med[(b, w, t)]:.2f}"
    return "-"
print("| ratio | " + " | ".join(f"{w.upper()} {t}t" for w, t in cols) + " |")
print("| --- | " + " | ".join("---:" for _ in cols) + " |")
print("| gradus / PyTorch (targets 2.0, 1.8, 1.6, 1.4) | " + " | ".join(ratio("gradus", "pytorch", w, t) for w, t in cols) + " |")
print("| gradus / ndarray baseline (target 0.9) | " + " | ".join(ratio("gradus", "ndarray-baseline", w, t) for w, t in cols) + " |")
for w in ("w1", "w2"):
    if ("gradus", w, "1") in med and ("gradus", w, "2") in med:
        print(f"\ngradus 2 threads / 1 thread on {w.upper()}: {med[('gradus', w, '2')] / med[('gradus', w, '1')]:.2f}" + (" (target 1.4)" if w == "w2" else ""))
print(f"\n{len(rows)} runs, medians of {max(len(v) for v in runs.values())} passes")
