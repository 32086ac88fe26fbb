#!/usr/bin/env bash
# The Python package's round on a GPU machine (offline): install it (builds and bundles
# libflashmla.so), run the tests, the example and, with --bench, the benchmark. Logs and
# results go to the output folder.
#
#   python/tools/gpu-check.sh [--bench] [out_dir]      (default out_dir: $OUT, else ./python-check-out)
#
# Environment: FLASHMLA_COMMIT (recorded by the benchmark), PYTEST_ARGS (extra pytest arguments).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=0
[ "${1:-}" = "--bench" ] && { bench=1; shift; }
out=${1:-${OUT:-$root/python-check-out}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 FLASHMLA_CACHE_DIR=${FLASHMLA_CACHE_DIR:-$root/python/build/kernel-cache}
cd "$root"

echo "== install"
python3 -m pip install -v --no-build-isolation --no-deps ./python >"$out/install.log" 2>&1
grep -E "flashmla setup:|Successfully installed|error" "$out/install.log" | tail -5
(cd /tmp && python3 -c "import flashmla, torch; print('flashmla', flashmla.version(), flashmla.library_path()); print('torch', torch.__version__, torch.cuda.get_device_name())") || exit 1

# Kernels are compiled inside the torch processes themselves (cold cache): the crash that
# once needed a torch-free warm-up (std::regex under torch) is fixed; this probe shows it.
timeout 300 python3 python/tools/nvrtc_in_torch.py --json "$out/nvrtc-in-torch.json" || exit 1

echo "== tests"
timeout 480 python3 -m pytest python/tests -q -rs ${PYTEST_ARGS:-} 2>&1 | tee "$out/pytest.log" | tail -40
tests=${PIPESTATUS[0]}

echo "== example"
timeout 120 python3 python/examples/mla_decoder_layer.py 2>&1 | tee "$out/example.log"

if [ "$bench" = 1 ]; then
  echo "== benchmark"
  (cd /tmp && timeout 500 python3 -m flashmla.bench --out-json "$out/python-bench.json" --out-png "$out/decode.png") \
    2>&1 | tee "$out/bench.log"
fi
exit "$tests"
