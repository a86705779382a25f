#!/usr/bin/env python3
"""Turns mpi-results.jsonl (benches/compare/mpi.sh) into a table of medians over passes."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gemm = [r["gflops"] for r in rows if "gemm" in r]
runs = defaultdict(list)
for r in rows:
    if "gemm" in r:
        continue
    name = r["impl"] + (f" ({r['reduction']})" if "reduction" in r else "")
    runs[(r["workload"], name)].append(r)
for workload in sorted({w for w, _ in runs}):
    base = runs.get((workload, "gradus"))
    one = statistics.median(r["samples_per_sec"] for r in base) if base else None
    print(f"| {workload.upper()} | samples/s (passes) | against 1 worker | sum ms/step | copy ms/step |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (w, name), rs in sorted(runs.items(), key=lambda kv: (kv[0][0], len(kv[0][1]), kv[0][1])):
        if w != workload:
            continue
        rates = [r["samples_per_sec"] for r in rs]
        med = statistics.median(rates)
        ratio = f"{med / one:.2f}x" if one else "-"
        ms = lambda f: f"{statistics.median(r[f] for r in rs):.2f}" if f in rs[0] else "-"
        passes = ", ".join(f"{x / 1000:.1f}k" for x in rates)
        print(f"| {name} | {med / 1000:.1f}k ({passes}) | {ratio} | {ms('allreduce_ms_per_step')} | {ms('copy_ms_per_step')} |")
    print()
print(f"GEMM (sgemm 512^3, 1 thread): {', '.join(f'{g:.1f}' for g in gemm)} GFLOP/s")
