"""Does a kernel compile (NVRTC) work inside a process that imported torch?

Runs one small decode, whose kernel is not cached yet, in child processes under variants
(library defaults; FLASHMLA_NVRTC_LIBRARY at the toolkit's libnvrtc; no RTLD_DEEPBIND;
flashmla imported before torch) and prints each child's exit status, the libnvrtc files it
mapped and, for a crash, the native stack (python/tools/segv_backtrace.c, built with gcc).
Needs a GPU. Exits 1 when the default variant fails.

Found with it (H100 machine, torch 2.11+cu130, 2026-11-26): every variant crashed inside
std::regex construction (the ptxas-log parser), not in NVRTC; the parser no longer uses
std::regex.

    python3 python/tools/nvrtc_in_torch.py [--json OUT]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

CHILD = r"""
import os
if os.environ.get("PROBE_FLASHMLA_FIRST") == "1":
    import flashmla  # noqa: F401
import torch
from flash_mla import flash_mla_with_kvcache, get_mla_metadata
b, s_q, h_q, s_k, page = 2, 1, 16, 300, 64
blocks = (s_k + page - 1) // page
q = torch.randn(b, s_q, h_q, 576, dtype=torch.bfloat16, device="cuda")
cache = torch.randn(b * blocks, page, 1, 576, dtype=torch.bfloat16, device="cuda")
table = torch.arange(b * blocks, dtype=torch.int32, device="cuda").view(b, blocks)
lens = torch.full((b,), s_k, dtype=torch.int32, device="cuda")
def mapped(part):
    return sorted({l.split()[-1] for l in open("/proc/self/maps") if part in l and "/" in l})
print("before compile: nvrtc", mapped("libnvrtc"), "libstdc++", mapped("libstdc++"), flush=True)
md, splits = get_mla_metadata(lens, s_q * h_q, 1)
out, lse = flash_mla_with_kvcache(q, cache, table, lens, 512, md, splits)
torch.cuda.synchronize()
assert torch.isfinite(out.float()).all()
print("after compile: nvrtc", mapped("libnvrtc"))
"""

TOOLKIT_NVRTC = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "lib64", "libnvrtc.so.13")
VARIANTS = {
    "default": {},
    "toolkit_nvrtc_by_path": {"FLASHMLA_NVRTC_LIBRARY": TOOLKIT_NVRTC},
    "no_deepbind": {"FLASHMLA_DLOPEN_DEEPBIND": "0"},
    "flashmla_imported_first": {"PROBE_FLASHMLA_FIRST": "1"},
}


def run(name, extra):
    cache = tempfile.mkdtemp(prefix="flashmla-nvrtc-probe-")
    env = dict(os.environ, FLASHMLA_CACHE_DIR=cache, **extra)
    env.pop("FLASHMLA_BUNDLE", None)
    cmd = [sys.executable, "-X", "faulthandler", "-c", CHILD]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    result = {"variant": name, "env": extra, "exit": p.returncode,
              "stdout": p.stdout.strip()[-600:], "stderr": p.stderr.strip()[-1500:]}
    if p.returncode != 0 and shutil.which("gcc"):  # again, with a native stack printed at the fault
        so = os.path.join(tempfile.mkdtemp(), "segv_backtrace.so")
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "segv_backtrace.c")
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", so, src], check=True)
        g = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300,
                           env=dict(env, LD_PRELOAD=so,
                                    FLASHMLA_CACHE_DIR=tempfile.mkdtemp(prefix="flashmla-nvrtc-probe-")))
        result["native_stack"] = g.stderr.split("== native stack at the fault ==")[-1].strip().splitlines()[:30]
    shutil.rmtree(cache, ignore_errors=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    a = ap.parse_args()
    results = [run(name, extra) for name, extra in VARIANTS.items()]
    for r in results:
        print(f"{r['variant']:26} exit {r['exit']}")
        for line in r["stdout"].splitlines()[-2:]:
            print("   ", line[:300])
        if r["exit"] != 0:
            print("   ", r["stderr"][-400:].replace("\n", "\n    "))
            for line in r.get("native_stack", []):
                print("   ", line[:200])
    if a.json:
        json.dump(results, open(a.json, "w"), indent=2)
    sys.exit(0 if results[0]["exit"] == 0 else 1)  # the library's defaults must work


if __name__ == "__main__":
    main()
