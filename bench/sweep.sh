#!/usr/bin/env bash
# Times every valid decode_mma config of the device's arch on a few problems (until the
# autotuner exists): bench/sweep.sh BUILD_DIR "b s_q h_q s_k" ["b s_q h_q s_k" ...]
set -uo pipefail
build=$1; shift
arch=$("$build/flashmla" info | grep -oE "sm_[0-9]+a?" | head -1)
configs=$("$build/flashmla" compile-check --arch "$arch" | grep -oE "decode_mma-\S+")
for row in "$@"; do
  read -r b s_q h_q s_k <<<"$row"
  echo "== b=$b s_q=$s_q h_q=$h_q s_k=$s_k"
  for c in $configs; do
    "$build/flashmla" bench -b "$b" --s-q "$s_q" --h-q "$h_q" --s-k "$s_k" --runs 20 --config "$c" | tail -1
  done | sort -k5 -n | head -8
done
