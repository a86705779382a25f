#!/usr/bin/env python3
"""Turns results.jsonl into the comparison table (medians over passes) with the ratios."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gemm_gflops = [r["gflops"] for r in rows if "gemm" in r]
rows = [r for r in rows if "gemm" not in r]
runs, acc, allocs, names = defaultdict(list), defaultdict(list), {}, {}
phases = defaultdict(list)
for r in rows:
    impl = r["impl"].split()[0]
    names[impl] = r["impl"]
    # Two workers use two threads, each with single-threaded products.
    threads = "2" if impl.endswith("-2workers") else r["threads"]
    key = (impl, r["workload"], threads)
    runs[key].append(r["samples_per_sec"])
    acc[key].append(r["test_accuracy"])
    if "step_us" in r:
        phases[key].append(r["step_us"])
    if "allocations_per_step" in r:
        allocs[(impl, r["workload"])] = (r["allocations_per_step"], r.get("gemm_allocations_per_step"))
order = ["gradus", "gradus-2workers", "ndarray-baseline", "gradus+openblas", "ndarray-baseline+openblas", "pytorch"]
impls = sorted({k[0] for k in runs}, key=lambda i: order.index(i) if i in order else 99)
med = {k: statistics.median(v) for k, v in runs.items()}
workloads = sorted({k[1] for k in runs})
cols = [(w, t) for w in workloads for t in ("1", "2")]
print("| implementation | " + " | ".join(f"{w.upper()} {t} thread{'s' if t == '2' else ''}" for w, t in cols) + f" | test accuracy after 3 epochs, 1 thread ({' / '.join(w.upper() for w in workloads)}) |")
print("| --- | " + " | ".join("---:" for _ in cols) + " | ---: |")
for i in impls:
    cells = [f"{med[(i, w, t)] / 1000:.1f}k" if (i, w, t) in med else "-" for w, t in cols]
    accs = [f"{100 * statistics.median(acc[(i, w, '1')]):.2f}%" if (i, w, "1") in acc else "-" for w in workloads]
    print(f"| {names[i]} | " + " | ".join(cells) + f" | {' / '.join(accs)} |")
print()


def ratio(a, b, w, t):
    if (a, w, t) in med and (b, w, t) in med:
        return f"{med[(a, w, t)] / med[(b, w, t)]:.2f}"
    return "-"


print("| ratio | " + " | ".join(f"{w.upper()} {t}t" for w, t in cols) + " |")
print("| --- | " + " | ".join("---:" for _ in cols) + " |")
for g in ("gradus", "gradus+openblas"):
    if any(k[0] == g for k in med):
        base = g.replace("gradus", "ndarray-baseline")
        print(f"| {g} / PyTorch (targets: W1 2.0, 1.8; W2 1.6, 1.4; W3 1.5, 1.5) | " + " | ".join(ratio(g, "pytorch", w, t) for w, t in cols) + " |")
        print(f"| {g} / {base} (target 0.9) | " + " | ".join(ratio(g, base, w, t) for w, t in cols) + " |")
print()
for g in ("gradus", "gradus+openblas"):
    for w in workloads:
        if (g, w, "1") in med and (g, w, "2") in med:
            print(f"{g} 2 threads / 1 thread on {w.upper()}: {med[(g, w, '2')] / med[(g, w, '1')]:.2f}" + (" (target 1.4)" if w == "w2" else "") + "  ")
for (g, w), (n, gemm) in sorted(allocs.items()):
    extra = f", plus {gemm} by the GEMM library (matrixmultiply's packing buffers)" if gemm else ""
    print(f"{g}: {n} heap allocations per {w.upper()} step{extra}  ")
for w, targets in (("w1", "1.7 / 2.0"), ("w2", "1.8 / 1.6"), ("w3", "- / 1.5")):
    if ("gradus-2workers", w, "2") in med:
        one = f"{med[('gradus-2workers', w, '2')] / med[('gradus', w, '1')]:.2f}" if ("gradus", w, "1") in med else "-"
        pt = ratio("gradus-2workers", "pytorch", w, "2")
        print(f"2 workers on {w.upper()}: {med[('gradus-2workers', w, '2')] / 1000:.1f}k, {one}x one worker, {pt}x PyTorch at 2 threads (targets {targets})  ")
if phases:
    # The trainer's own timing (EpochRecord::step_times), medians over the passes.
    print("\n| gradus, µs per step | forward and backward | sum of the gradients | update | step (from samples/s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    batch = {"w1": 64, "w2": 256, "w3": 64}
    for key in sorted(phases, key=lambda k: (k[1], impls.index(k[0]), k[2])):
        i, w, t = key
        cells = [f"{statistics.median(p[phase] for p in phases[key]):.0f}" for phase in ("forward_backward", "reduce", "update")]
        print(f"| {names[i]} {w.upper()} {t} thread{'s' if t == '2' else ''} | " + " | ".join(cells) + f" | {1e6 * batch.get(w, 0) / med[key]:.0f} |")
if gemm_gflops:
    print(f"\nGEMM (sgemm 512^3, 1 thread): {', '.join(f'{g:.1f}' for g in gemm_gflops)} GFLOP/s")
print(f"\n{len(rows)} runs, medians of {max(len(v) for v in runs.values())} passes")
