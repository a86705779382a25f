#!/usr/bin/env bash
# Many-core scaling: gradus with N data-parallel workers (single-threaded matrix products)
# against PyTorch at N threads, on W1 and W2 (and W3 at the larger counts), in interleaved
# passes. Made to run on a borrowed many-core machine within a short lease, with binaries
# built elsewhere:
#
#   cargo build --release -p gradus-examples --example throughput
#   BIN=target/release/examples/throughput THREADS="1 4 8 16" PASSES=2 \
#     RESULTS=scaling.jsonl bash benches/compare/scaling.sh
#   python3 benches/compare/scaling_summary.py scaling.jsonl
#
# BIN_OPENBLAS=<throughput built with --features openblas> adds gradus on OpenBLAS (one
# thread per worker); WORKLOADS (default "w1 w2") chooses the interleaved workloads.
# Each gradus run times 4 epochs (SKIP_ACCURACY=1: accuracy is measured by run.sh);
# PyTorch runs benches/compare/torch_mlp.py. Every run has a time limit, so one hung run
# costs its limit, not the lease.
set -u
cd "$(dirname "$0")/../.."
bin=${BIN:-target/release/examples/throughput}
out=${RESULTS:-benches/compare/scaling.jsonl}
python=${PYTHON:-python3}
threads=${THREADS:-1 4 8 16}
w3_threads=${W3_THREADS-4 16}
limit=${RUN_LIMIT:-120}

machine=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "{\"machine\": \"$machine\", \"cpus\": $(nproc)}" >> "$out"
run() {
  timeout "$limit" "$@" >> "$out" || echo "failed or over ${limit}s: $*" >&2
}
gradus() { # workload workers
  SKIP_ACCURACY=1 WORKERS=$2 MATMUL_NUM_THREADS=1 run "$bin" "$1"
  if [ -n "${BIN_OPENBLAS:-}" ]; then
    SKIP_ACCURACY=1 WORKERS=$2 OPENBLAS_NUM_THREADS=1 run "$BIN_OPENBLAS" "$1"
  fi
}
pytorch() { # workload threads
  run "$python" benches/compare/torch_mlp.py "$1" --threads "$2"
}
for pass in $(seq "${PASSES:-2}"); do
  MATMUL_NUM_THREADS=1 run "$bin" gemm
  [ -n "${BIN_OPENBLAS:-}" ] && OPENBLAS_NUM_THREADS=1 run "$BIN_OPENBLAS" gemm
  for workload in ${WORKLOADS:-w1 w2}; do
    for t in $threads; do
      echo "pass $pass: $workload, $t" >&2
      gradus "$workload" "$t"
      pytorch "$workload" "$t"
    done
  done
done
for t in $w3_threads; do
  echo "w3, $t" >&2
  gradus w3 "$t"
  pytorch w3 "$t"
done
