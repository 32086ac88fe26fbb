#!/usr/bin/env bash
# One round on the GPU machine: configure and build, run every test, run compute-sanitizer
# (memcheck, racecheck) over a subset of the GPU tests, run the GPU tests again from an AOT
# bundle with NVRTC made unavailable, time the first call (cold JIT, warm disk cache,
# bundle), run the decode benchmark preset, and write logs plus a JSON summary.
#
#   tools/device-check.sh [out_dir]      (default: $OUT, else ./device-check-out)
#
# Environment: FLASHMLA_COMMIT (recorded commit; default: git rev-parse, with "-dirty" appended
# when the tracked files differ from that commit, as on a copy whose git metadata is stale: pass
# FLASHMLA_COMMIT there), CUDA_HOME.
# Catch2 v2 is taken from .deps/catch2/usr when present (Debian's package, unpacked there by
# `apt-get download catch2 && dpkg -x`), since the GPU machine ships Catch2 v3.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${OUT:-$root/device-check-out}}
mkdir -p "$out"
build=$root/build-device
if [ -z "${FLASHMLA_COMMIT:-}" ]; then
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ "$commit" != unknown ] && ! git -C "$root" diff --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
else
  commit=$FLASHMLA_COMMIT
fi
export FLASHMLA_CACHE_DIR=$build/kernel-cache

prefix=""
[ -d "$root/.deps/catch2/usr" ] && prefix="$root/.deps/catch2/usr"
echo "== build ($commit)"
if ! { cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" &&
       ninja -C "$build"; } >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  echo '{"error": "build failed", "commit": "'"$commit"'"}' >"$out/device-check.json"
  exit 1
fi

echo "== tests"
"$build/flashmla" info | tee "$out/ctest.log"
(cd "$build" && ctest --output-on-failure --output-junit "$out/ctest.xml") >>"$out/ctest.log" 2>&1
tail -15 "$out/ctest.log"
# Case-level detail of the GPU tests (Catch2 JUnit report).
"$build/tests/gpu_test_decode_gpu" -r junit -o "$out/gpu-tests.xml" >/dev/null 2>&1

echo "== compute-sanitizer"
# Catch2 test specs: a comma separates names, so the strided case is matched by its prefix.
subset=("mla_decode honours an explicit softmax_scale" "mla_decode with strided*")
: >"$out/steps.log"
for tool in memcheck racecheck; do
  for name in "${subset[@]}"; do
    echo "-- $tool: $name" >>"$out/steps.log"
    compute-sanitizer --tool "$tool" --print-limit 20 "$build/tests/gpu_test_decode_gpu" "$name" \
      >>"$out/steps.log" 2>&1
    echo "exit $?" >>"$out/steps.log"
  done
done
# The Hopper families pinned (decode_wgmma s1/s2, decode_seesaw with TMA and mbarriers); skips
# itself on other GPUs.
for tool in memcheck racecheck; do
  echo "-- $tool: gpu_test_decode_wgmma_gpu" >>"$out/steps.log"
  timeout 600 compute-sanitizer --tool "$tool" --print-limit 20 "$build/tests/gpu_test_decode_wgmma_gpu" \
    >>"$out/steps.log" 2>&1
  echo "exit $?" >>"$out/steps.log"
done
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^exit|^-- " "$out/steps.log"

echo "== GPU tests from an AOT bundle, NVRTC unavailable"
bundle=$build/bundle
"$build/flashmla" compile --all --arch "$(grep -oE "sm_[0-9]+a?" "$out/ctest.log" | head -1)" -o "$bundle" \
  >"$build/compile.log" 2>&1
tail -1 "$build/compile.log" | tee -a "$out/steps.log"
FLASHMLA_BUNDLE=$bundle FLASHMLA_JIT=0 FLASHMLA_NVRTC_LIBRARY=/nonexistent/libnvrtc.so \
  "$build/tests/gpu_test_decode_gpu" >>"$out/steps.log" 2>&1
echo "bundle gpu tests exit $?" | tee -a "$out/steps.log"

echo "== first-call latency"
cold=$(mktemp -d)
for mode in cold_jit warm_disk_cache bundle; do
  case $mode in
    bundle) env FLASHMLA_CACHE_DIR="$cold" FLASHMLA_BUNDLE="$bundle" FLASHMLA_JIT=0 \
              FLASHMLA_NVRTC_LIBRARY=/nonexistent/libnvrtc.so "$build/flashmla" first-call ;;
    *) env FLASHMLA_CACHE_DIR="$cold" "$build/flashmla" first-call ;;
  esac | sed "s/^{/{\"mode\": \"$mode\", /" | tee -a "$out/startup.jsonl"
done

echo "== benchmark (the configs dispatch picks: tuning table, else heuristic)"
"$build/flashmla" bench --preset --json "$out/decode-preset.json" --commit "$commit" | tee -a "$out/steps.log"

python3 "$root/tools/device_check_summary.py" "$out" "$commit"
