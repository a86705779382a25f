#!/usr/bin/env bash
# gradus from a user's own crate: the README's MLP (784-256-10, Adam, batch 64, 60,000
# images) trained by tests/downstream, a crate outside the workspace, in the dev profile,
#   - with the README's advice (`[profile.dev.package."*"] opt-level = 3`),
#   - without it (a copy of the crate with that section removed: gradus warns, once),
# against the same source built as the workspace's `downstream_mlp` example (dev profile).
# Interleaved passes; medians of samples/s; the machine's GEMM figure first.
#
#   bash benches/downstream.sh           # PASSES=3 by default
#
# Prints a markdown table and keeps the JSON lines in benches/compare/results/downstream.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
passes=${PASSES:-3}
root=$PWD
plain=$(mktemp -d)
trap 'rm -rf "$plain"' EXIT

cargo build -q --release -p gradus-examples --example throughput
cargo build -q -p gradus-examples --example downstream_mlp
cargo build -q --manifest-path tests/downstream/Cargo.toml
# The user who did not take the advice: the same crate without the profile section.
cp -r tests/downstream/src tests/downstream/Cargo.lock "$plain/"
sed -e '/^\[profile.dev.package."\*"\]/,/^opt-level/d' \
    -e "s#\.\./\.\./crates/gradus#$root/crates/gradus#" tests/downstream/Cargo.toml > "$plain/Cargo.toml"
cargo build -q --manifest-path "$plain/Cargo.toml"

out=benches/compare/results/downstream.jsonl
MATMUL_NUM_THREADS=1 target/release/examples/throughput gemm | tee "$out"
run() { # name, binary, images
  local line
  line=$(MATMUL_NUM_THREADS=1 "$2" "$3" 2>/dev/null | grep '^downstream:')
  echo "{\"build\": \"$1\", \"images\": $3, \"samples_per_sec\": $(echo "$line" | awk '{print $4}')}" | tee -a "$out"
}
for pass in $(seq "$passes"); do
  run workspace target/debug/examples/downstream_mlp 60000
  run advised tests/downstream/target/debug/downstream 60000
  # Unoptimised gradus is about 40x slower: a tenth of the data keeps the run short.
  run plain "$plain/target/debug/downstream" 6000
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
gemm = next(r for r in rows if "gemm" in r)
med = {b: statistics.median(r["samples_per_sec"] for r in rows if r.get("build") == b)
       for b in ("workspace", "advised", "plain")}
print(f"\nGEMM: {gemm['gflops']} GFLOP/s ({gemm['gemm']}, 1 thread)\n")
print("| build of the README's MLP (dev profile, 1 thread) | samples/s | vs the workspace |")
print("| --- | ---: | ---: |")
names = {"workspace": "the workspace's example (`downstream_mlp`)",
         "advised": "a user's crate with `[profile.dev.package.\"*\"] opt-level = 3`",
         "plain": "a user's crate without it"}
for b in ("workspace", "advised", "plain"):
    print(f"| {names[b]} | {med[b]:,.0f} | {med[b] / med['workspace']:.2f}x |")
PY
