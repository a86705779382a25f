#!/usr/bin/env bash
# Side-by-side throughput: gradus (through its Trainer), a hand-written ndarray baseline and
# PyTorch, on the standard workloads W1 and W2, at 1 and 2 threads, in interleaved passes.
# gradus and the baseline run with the default pure-Rust matmul (matrixmultiply) and, when
# a system OpenBLAS is installed (apt-get install libopenblas-dev), with `--features openblas`.
#
#   bash benches/compare/run.sh                    # uses python3 with torch if importable
#   bash benches/compare/run.sh --install-torch    # first creates benches/compare/.venv with torch
#   PASSES=3 bash benches/compare/run.sh           # passes (default 3); the table shows medians
#   WORKLOADS="w3" bash benches/compare/run.sh     # only some workloads (default w1 w2 w3)
#   OPENBLAS=0 bash benches/compare/run.sh         # skip the OpenBLAS backend
#   PYTHON=/path/to/venv/bin/python bash ...       # the Python with torch to compare with
#
# Prints a markdown table with samples/s, the ratios of the targets and test accuracy, and
# keeps the raw JSON lines in benches/compare/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/compare
passes=${PASSES:-3}
python=${PYTHON:-python3}
if [ "${1:-}" = "--install-torch" ]; then
  [ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install -q torch numpy
fi
[ -x "$here/.venv/bin/python" ] && python="$here/.venv/bin/python"
have_torch=1
"$python" -c "import torch" 2>/dev/null || { have_torch=0; echo "note: no torch for $python; run with --install-torch to compare with PyTorch" >&2; }

examples="--example throughput --example baseline_ndarray"
cargo build --release -q -p gradus-examples $examples
bins=(target/release/examples)
if [ "${OPENBLAS:-1}" = 0 ]; then
  echo "note: OPENBLAS=0; skipping the openblas backend" >&2
elif ls /usr/lib/*/libopenblas.so >/dev/null 2>&1; then
  CARGO_TARGET_DIR=target/openblas cargo build --release -q -p gradus-examples --features openblas $examples
  bins+=(target/openblas/release/examples)
else
  echo "note: no system OpenBLAS (apt-get install libopenblas-dev); skipping the openblas backend" >&2
fi
# Debian's OpenBLAS 0.3.21 does not recognise Zen 4/5 and picks its AVX2 (Haswell) kernels
# (and this workplace's environment sets OPENBLAS_CORETYPE=Haswell); on a CPU with AVX-512
# use its AVX-512 (SkylakeX) kernels. Set GRADUS_OPENBLAS_CORETYPE to choose another.
if [ -n "${GRADUS_OPENBLAS_CORETYPE:-}" ]; then
  export OPENBLAS_CORETYPE=$GRADUS_OPENBLAS_CORETYPE
elif grep -q avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SKYLAKEX
fi
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-}" >&2

out="$here/results.jsonl"
: > "$out"
for pass in $(seq "$passes"); do
  # The machine's GEMM figure, printed beside the table (machines differ 2x and more).
  MATMUL_NUM_THREADS=1 "${bins[0]}/throughput" gemm >> "$out"

  for workload in ${WORKLOADS:-w1 w2 w3}; do
    for threads in 1 2; do
      echo "pass $pass: $workload, $threads thread(s)" >&2
      for bin in "${bins[@]}"; do
        MATMUL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$bin/throughput" "$workload" >> "$out"
        if [ "$threads" = 2 ]; then
          # Two data-parallel workers, each with single-threaded matrix products.
          WORKERS=2 MATMUL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$bin/throughput" "$workload" >> "$out"
        fi
        # The hand-written baseline has the MLP workloads only.
        if [ "$workload" != w3 ]; then
          MATMUL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$bin/baseline_ndarray" "$workload" >> "$out"
        fi
      done
      if [ "$have_torch" = 1 ]; then
        "$python" "$here/torch_mlp.py" "$workload" --threads "$threads" >> "$out"
      fi
    done
  done
done
python3 "$here/summarize.py" "$out"
