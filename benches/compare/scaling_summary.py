#!/usr/bin/env python3
"""Turns scaling.sh's JSON lines into the table of samples/s by worker or thread count
(medians over passes), with gradus / PyTorch and each one's speed-up over one thread."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = defaultdict(list)
gemm, machine = [], None
for r in rows:
    if "machine" in r:
        machine = f"{r['machine']}, {r['cpus']} CPUs"
    elif "gemm" in r:
        gemm.append(r["gflops"])
    else:
        impl = r["impl"].split()[0]
        if impl.startswith("gradus"):
            # "gradus-16workers" ran 16 workers of one thread each.
            n = impl.split("-")[1].removesuffix("workers") if "-" in impl else "1"
            runs[("gradus", r["workload"], int(n))].append(r["samples_per_sec"])
        else:
            runs[("pytorch", r["workload"], int(r["threads"]))].append(r["samples_per_sec"])
med = {k: statistics.median(v) for k, v in runs.items()}
print(f"Machine: {machine}; GEMM (sgemm 512^3, 1 thread): {', '.join(f'{g:.1f}' for g in gemm)} GFLOP/s\n")
for w in sorted({k[1] for k in med}):
    counts = sorted({k[2] for k in med if k[1] == w})
    print(f"| {w.upper()}: workers / threads | gradus | PyTorch | gradus / PyTorch | gradus / gradus at 1 | PyTorch / PyTorch at 1 |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in counts:
        g, p = med.get(("gradus", w, n)), med.get(("pytorch", w, n))
        g1, p1 = med.get(("gradus", w, 1)), med.get(("pytorch", w, 1))
        cell = lambda v: f"{v / 1000:.1f}k" if v else "-"
        ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
        print(f"| {n} | {cell(g)} | {cell(p)} | {ratio(g, p)} | {ratio(g, g1)} | {ratio(p, p1)} |")
    print()
print(f"{len(rows)} lines, medians of up to {max(len(v) for v in runs.values())} passes")
