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
        # Lines of the openblas build follow the default build's in each pass.
    else:
        impl = r["impl"].split()[0]
        if impl.startswith("gradus"):
            # "gradus-16workers" ran 16 workers of one thread each.
            name, _, n = impl.partition("-")
            n = n.removesuffix("workers") or "1"
            runs[(name, r["workload"], int(n))].append(r["samples_per_sec"])
        else:
            runs[("pytorch", r["workload"], int(r["threads"]))].append(r["samples_per_sec"])
med = {k: statistics.median(v) for k, v in runs.items()}
print(f"Machine: {machine}; GEMM (sgemm 512^3, 1 thread): {', '.join(f'{g:.1f}' for g in gemm)} GFLOP/s\n")
cell = lambda v: f"{v / 1000:.1f}k" if v else "-"
ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
for impl in sorted({k[0] for k in med if k[0] != "pytorch"}):
    for w in sorted({k[1] for k in med if k[0] == impl}):
        counts = sorted({k[2] for k in med if k[1] == w})
        print(f"| {w.upper()}: workers / threads | {impl} | PyTorch | {impl} / PyTorch | {impl} / itself at 1 | PyTorch / PyTorch at 1 |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for n in counts:
            g, p = med.get((impl, w, n)), med.get(("pytorch", w, n))
            g1, p1 = med.get((impl, w, 1)), med.get(("pytorch", w, 1))
            print(f"| {n} | {cell(g)} | {cell(p)} | {ratio(g, p)} | {ratio(g, g1)} | {ratio(p, p1)} |")
        print()
print(f"{len(rows)} lines, medians of up to {max(len(v) for v in runs.values())} passes")
