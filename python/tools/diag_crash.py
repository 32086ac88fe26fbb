"""Temporary diagnostic: one small decode, printing the libraries loaded."""
import sys

import torch

sys.path.insert(0, "python")
sys.path.insert(0, "python/tests")
import flashmla  # noqa: E402
from mla_reference import compare, make_problem, reference  # noqa: E402

t = make_problem(b=2, s_q=1, h_q=16, seqlens=[5, 100], seed=1)
print("lib", flashmla.library_path(), flashmla.version(), flush=True)
md, ns = flashmla.get_mla_metadata(t["cache_seqlens"], 16, 1)
out, lse = flashmla.flash_mla_with_kvcache(t["q"], t["k_cache"], t["block_table"], t["cache_seqlens"], 512, md, ns)
torch.cuda.synchronize()
print("decoded", flashmla.scheduled_config(md), compare(out, lse, *reference(**t), torch.bfloat16), flush=True)
print("".join(sorted({line.split()[-1] + "\n" for line in open("/proc/self/maps") if "nvrtc" in line or "libstdc" in line})))
