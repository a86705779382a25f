#!/usr/bin/env python3
"""The cost model of docs/distributed.md: ring-allreduce time per step against compute time
per step, for W2 and the W3 CNN, at 2 to 1024 workers over 10, 25 and 100 Gb/s links.

Ring allreduce of S bytes over N workers: each sends and receives 2 (N - 1) / N * S bytes in
2 (N - 1) messages, so  t_comm = 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * alpha.
Weak scaling: every worker keeps the per-worker batch, so compute per step is constant.

    python3 scripts/cost_model.py     # prints the markdown tables
"""

# f32 parameters of the models (counted from the layer sizes).
W2_PARAMS = (784 * 512 + 512) + (512 * 512 + 512) + (512 * 10 + 10)
W3_PARAMS = (1 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (1600 * 128 + 128) + (128 * 10 + 10)
# Compute per step per worker, measured on this project's 2-core EPYC, release, one thread
# (benches/compare/results/2026-11-26-mpi.jsonl and -w3.jsonl): W2 256 samples at 25.0k/s,
# W3 64 samples at 2.72k/s.
WORKLOADS = {
    "W2 (MLP, batch 256 per worker)": (W2_PARAMS, 256 / 25_000),
    "W3 (CNN, batch 64 per worker)": (W3_PARAMS, 64 / 2_720),
}
LINKS_GBPS = [10, 25, 100]
# Per-message latency: a typical TCP round through an MPI library on Ethernet (an
# assumption, not a measurement; RDMA fabrics are nearer 2 us).
ALPHA = 5e-6
WORKERS = [2, 8, 32, 128, 1024]


def t_comm(params, n, gbps):
    size = 4 * params
    return 2 * (n - 1) / n * size / (gbps * 1e9 / 8) + 2 * (n - 1) * ALPHA


for name, (params, compute) in WORKLOADS.items():
    print(f"\n{name}: {params:,} parameters = {4 * params / 1e6:.2f} MB of gradients per "
          f"step; compute {1e3 * compute:.1f} ms per step\n")
    print("| workers | " + " | ".join(f"{g} Gb/s: comm ms (comm / compute)" for g in LINKS_GBPS) + " |")
    print("| ---: |" + " ---: |" * len(LINKS_GBPS))
    for n in WORKERS:
        cells = []
        for g in LINKS_GBPS:
            t = t_comm(params, n, g)
            ratio = t / compute
            cells.append(f"{1e3 * t:.2f} ({ratio:.2f}{' **bound**' if ratio > 1 else ''})")
        print(f"| {n} | " + " | ".join(cells) + " |")
