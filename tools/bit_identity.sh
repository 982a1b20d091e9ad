#!/usr/bin/env bash
# Proves a refactor changed no result bit: builds two commits side by side and, under every
# microkernel path this CPU runs (KILN_ISA), compares
#   - `mnist_mlp --epochs 3 --exact`: every epoch's loss and accuracy with all digits and a
#     digest of the final weights' bits, and
#   - the random-graph property tests (fixed proptest seed): a digest of the JIT's result bits
#     for every generated graph and its gradients.
# Usage: tools/bit_identity.sh OLD_COMMIT [NEW_COMMIT (default: HEAD)]
# Prints one line per check and exits non-zero if any output differs.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(git rev-parse "${1:?usage: tools/bit_identity.sh OLD [NEW]}")
new=$(git rev-parse "${2:-HEAD}")
work=$(mktemp -d /tmp/kiln-bit-identity.XXXXXX)
trap 'git worktree remove --force "$work/old" 2>/dev/null || true;
      git worktree remove --force "$work/new" 2>/dev/null || true' EXIT

isas="baseline"
grep -q ' avx2 ' /proc/cpuinfo && grep -q ' fma ' /proc/cpuinfo && isas="$isas avx2"
grep -q ' avx512f ' /proc/cpuinfo && isas="$isas avx512"

status=0
for side in old new; do
    commit=${!side}
    git worktree add --quiet --detach "$work/$side" "$commit"
    # One target directory per side, so each build is incremental on a rerun.
    export CARGO_TARGET_DIR="${KILN_BIT_IDENTITY_TARGET:-/tmp/kiln-bit-identity-target}-$side"
    (cd "$work/$side" &&
        cargo build --quiet --release --example mnist_mlp &&
        cargo test --quiet --no-run --test random_graphs 2>/dev/null)
    for isa in $isas; do
        (cd "$work/$side" &&
            KILN_ISA=$isa cargo run --quiet --release --example mnist_mlp -- --epochs 3 --exact 2>/dev/null |
            grep '^exact:' >"$work/$side.mlp.$isa")
        rm -f "$work/$side.graphs.$isa"
        (cd "$work/$side" &&
            KILN_ISA=$isa PROPTEST_RNG_SEED=7 KILN_BITS_LOG="$work/$side.graphs.$isa" \
                cargo test --quiet --test random_graphs >/dev/null 2>&1)
        sort -o "$work/$side.graphs.$isa" "$work/$side.graphs.$isa"
    done
done

for isa in $isas; do
    for check in mlp graphs; do
        lines=$(wc -l <"$work/new.$check.$isa")
        if cmp -s "$work/old.$check.$isa" "$work/new.$check.$isa" && [ "$lines" -gt 0 ]; then
            echo "identical  $check  KILN_ISA=$isa  ($lines lines)"
        else
            echo "DIFFERENT  $check  KILN_ISA=$isa"
            diff "$work/old.$check.$isa" "$work/new.$check.$isa" | head -20 || true
            status=1
        fi
    done
done
echo "old $old, new $new"
exit $status
