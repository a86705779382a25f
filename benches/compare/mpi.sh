#!/usr/bin/env bash
# MPI ranks against workers in one process (2026-11-27): one process with one worker,
# `mpirun -n 2` with one worker per rank summing in shared memory (the default) and with one
# MPI_Allreduce (GRADUS_MPI_REDUCE=allreduce), and one process with 2 workers, in
# interleaved passes; every gradus run with single-threaded products.
#
#   bash benches/compare/mpi.sh                  # W2, 3 passes
#   WORKLOADS="w1 w2" PASSES=5 bash benches/compare/mpi.sh
#
# Needs MPICH (apt-get install mpich libmpich-dev libclang-dev). Prints a markdown table of
# medians and keeps the raw JSON lines in benches/compare/mpi-results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/compare
CARGO_TARGET_DIR=target/mpi cargo build --release -q -p gradus-examples --features mpi --example throughput
bin=target/mpi/release/examples/throughput
out="$here/mpi-results.jsonl"
: > "$out"
export MATMUL_NUM_THREADS=1 SKIP_ACCURACY=${SKIP_ACCURACY:-1}
for pass in $(seq "${PASSES:-3}"); do
  "$bin" gemm >> "$out"
  for workload in ${WORKLOADS:-w2}; do
    echo "pass $pass: $workload" >&2
    "$bin" "$workload" >> "$out"
    GRADUS_MPI_REDUCE=shared mpirun -n 2 "$bin" "$workload" >> "$out"
    GRADUS_MPI_REDUCE=allreduce mpirun -n 2 "$bin" "$workload" >> "$out"
    WORKERS=2 "$bin" "$workload" >> "$out"
  done
done
python3 "$here/mpi_summary.py" "$out"
