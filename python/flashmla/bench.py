"""Decode benchmark: flashmla beside naive PyTorch and torch SDPA over the PERF.md matrix.

    python -m flashmla.bench [--out-json PATH] [--out-png PATH] [--runs N] [--impl flashmla,naive,sdpa]

bf16, d_qk 576, d_v 512, h_kv 1, page 64, equal lengths, causal when s_q = 2. Implementations:
  flashmla  flash_mla_with_kvcache (metadata computed once beforehand, as a step reuses it)
  naive     contiguous cache (gathered by the block table beforehand), q k^T, softmax, p v:
            two batched matmuls and a softmax
  sdpa      F.scaled_dot_product_attention, k = cache, v = cache[..., :512], heads expanded
Timing (PERF.md): CUDA events around one call, L2 flushed before each timed run (a 256 MB
write), warm-up first, median of the runs. FLOPs = 2 s_q h_q (576 + 512) sum(s_k); bytes =
sum(s_k) 576 * 2 + b s_q h_q (576 + 512) * 2. A run that fails (e.g. out of memory) is
recorded with its reason instead of a time.
"""

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
from pathlib import Path

MATRIX = [  # (b, s_q, h_q, s_k)
    (128, 1, 16, 4096), (128, 1, 16, 16384), (128, 1, 64, 8192), (128, 1, 128, 4096), (128, 1, 128, 16384),
    (128, 2, 128, 4096), (128, 2, 128, 8192), (1, 1, 128, 65536), (4, 1, 128, 4096), (8, 1, 128, 8192),
    (32, 1, 16, 4096),
]
D_QK, D_V, PAGE_SIZE = 576, 512, 64
IMPLS = ("flashmla", "naive", "sdpa")
FLUSH_BYTES = 256 << 20


def flops(b, s_q, h_q, s_k):
    return 2 * s_q * h_q * (D_QK + D_V) * b * s_k


def bytes_moved(b, s_q, h_q, s_k):
    return b * s_k * D_QK * 2 + b * s_q * h_q * (D_QK + D_V) * 2


def make_inputs(torch, b, s_q, h_q, s_k, seed=0):
    """q [b, s_q, h_q, 576], a paged cache with shuffled blocks, its block table and lengths (bf16)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    blocks = math.ceil(s_k / PAGE_SIZE)
    k_cache = torch.randn((b * blocks, PAGE_SIZE, 1, D_QK), generator=g, device="cuda", dtype=torch.bfloat16)
    block_table = torch.randperm(b * blocks, generator=g, device="cuda").to(torch.int32).view(b, blocks)
    return dict(
        q=torch.randn((b, s_q, h_q, D_QK), generator=g, device="cuda", dtype=torch.bfloat16),
        k_cache=k_cache,
        block_table=block_table,
        cache_seqlens=torch.full((b,), s_k, dtype=torch.int32, device="cuda"),
    )


def visible_mask(torch, s_q, s_k):
    """[s_q, s_k] bool, True where query s sees key t (t <= s_k - s_q + s); None when s_q = 1."""
    if s_q == 1:
        return None
    t = torch.arange(s_k, device="cuda")
    return t[None, :] <= (s_k - s_q + torch.arange(s_q, device="cuda"))[:, None]


def gathered_cache(torch, inp, s_k):
    """The contiguous cache [b, s_k, 576], gathered through the block table."""
    b = inp["q"].shape[0]
    rows = inp["k_cache"][inp["block_table"].long()]  # [b, blocks, page, 1, 576]
    return rows.reshape(b, -1, D_QK)[:, :s_k].contiguous()


def setup_flashmla(torch, inp, causal):
    from . import flash_mla_with_kvcache, get_mla_metadata, scheduled_config

    q = inp["q"]
    _, s_q, h_q, _ = q.shape
    md, ns = get_mla_metadata(inp["cache_seqlens"], s_q * h_q, 1)

    def run():
        return flash_mla_with_kvcache(q, inp["k_cache"], inp["block_table"], inp["cache_seqlens"], D_V, md, ns,
                                      causal=causal)

    run()  # computes the step's schedule (and compiles the kernels)
    return run, {"config": scheduled_config(md)}


def setup_naive(torch, inp, causal):
    q = inp["q"]
    b, s_q, h_q, _ = q.shape
    s_k = int(inp["cache_seqlens"][0])
    cache = gathered_cache(torch, inp, s_k)  # [b, s_k, 576]
    q_rows = (q * D_QK ** -0.5).reshape(b, s_q * h_q, D_QK)  # rows in (s, h) order
    mask = visible_mask(torch, s_q, s_k)
    hidden = None if mask is None else ~mask.repeat_interleave(h_q, dim=0)  # [s_q * h_q, s_k]

    def run():
        scores = torch.bmm(q_rows, cache.transpose(1, 2))  # [b, s_q * h_q, s_k]
        if hidden is not None:
            scores.masked_fill_(hidden, float("-inf"))
        return torch.bmm(torch.softmax(scores, dim=-1), cache[..., :D_V])

    return run, {}


def setup_sdpa(torch, inp, causal):
    import torch.nn.functional as F

    q = inp["q"]
    b, s_q, h_q, _ = q.shape
    s_k = int(inp["cache_seqlens"][0])
    cache = gathered_cache(torch, inp, s_k)
    k = cache[:, None].expand(b, h_q, s_k, D_QK)
    v = cache[:, None, :, :D_V].expand(b, h_q, s_k, D_V)
    q_heads = q.transpose(1, 2)  # [b, h_q, s_q, 576]
    mask = visible_mask(torch, s_q, s_k)  # bottom-right causal; SDPA's is_causal aligns top-left

    def run():
        return F.scaled_dot_product_attention(q_heads, k, v, attn_mask=mask, scale=D_QK ** -0.5)

    return run, {}


SETUP = {"flashmla": setup_flashmla, "naive": setup_naive, "sdpa": setup_sdpa}


def time_us(torch, fn, runs, warmup, flush):
    """Median time of fn in microseconds: CUDA events around each call, L2 flushed before each."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(runs):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1e3 for s, e in events)


def bench_row(torch, row, impls, runs, warmup, flush):
    b, s_q, h_q, s_k = row
    causal = s_q > 1
    inp = make_inputs(torch, b, s_q, h_q, s_k)
    results = []
    for impl in impls:
        record = {"b": b, "s_q": s_q, "h_q": h_q, "s_k": s_k, "impl": impl, "us": None, "tflops": None, "gbs": None}
        try:
            fn, extra = SETUP[impl](torch, inp, causal)
            us = time_us(torch, fn, runs, warmup, flush)
            record.update(extra, us=us, tflops=flops(*row) / us * 1e-6, gbs=bytes_moved(*row) / us * 1e-3)
        except torch.cuda.OutOfMemoryError as e:
            record["skipped"] = "out of memory: " + str(e).splitlines()[0]
        except RuntimeError as e:
            record["skipped"] = f"{type(e).__name__}: " + str(e).splitlines()[0]
        fn = None
        torch.cuda.empty_cache()
        results.append(record)
    return results


def commit():
    if os.environ.get("FLASHMLA_COMMIT"):
        return os.environ["FLASHMLA_COMMIT"]
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def format_table(rows):
    lines = [f"{'b':>4} {'s_q':>3} {'h_q':>4} {'s_k':>6}  {'impl':<9} {'us':>10} {'TFLOP/s':>8} {'GB/s':>7}  note"]
    for r in rows:
        if r["us"] is None:
            lines.append(f"{r['b']:>4} {r['s_q']:>3} {r['h_q']:>4} {r['s_k']:>6}  {r['impl']:<9} {'-':>10} {'-':>8} "
                         f"{'-':>7}  {r.get('skipped', '')}")
        else:
            lines.append(f"{r['b']:>4} {r['s_q']:>3} {r['h_q']:>4} {r['s_k']:>6}  {r['impl']:<9} {r['us']:>10.1f} "
                         f"{r['tflops']:>8.1f} {r['gbs']:>7.0f}  {r.get('config', '')}")
    return "\n".join(lines)


def plot(result, path):
    """Time and TFLOP/s against context length (rows ordered by s_k), one line per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted({(r["s_k"], r["b"], r["h_q"], r["s_q"]) for r in result["rows"]})
    index = {s: i for i, s in enumerate(shapes)}
    labels = [f"{s_k}\nb{b} h{h} s{s_q}" for s_k, b, h, s_q in shapes]
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    for impl in dict.fromkeys(r["impl"] for r in result["rows"]):
        us = [math.nan] * len(shapes)
        tf = [math.nan] * len(shapes)
        for r in result["rows"]:
            if r["impl"] == impl and r["us"] is not None:
                i = index[(r["s_k"], r["b"], r["h_q"], r["s_q"])]
                us[i], tf[i] = r["us"], r["tflops"]
        axes[0].plot(range(len(shapes)), us, marker="o", label=impl)
        axes[1].plot(range(len(shapes)), tf, marker="o", label=impl)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("time per call (us, log)")
    axes[1].set_ylabel("TFLOP/s")
    axes[1].set_xticks(range(len(shapes)), labels, fontsize=7)
    axes[1].set_xlabel("context length s_k (and b, h_q, s_q of the row)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"MLA decode, bf16, d_qk 576, d_v 512, page 64: {result['gpu']} "
                 f"({result['date']}, {result['commit']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m flashmla.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out-json", default="flashmla-bench.json", help="results JSON (default: %(default)s)")
    parser.add_argument("--out-png", default="flashmla-bench.png", help="plot PNG (default: %(default)s; '' skips)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measurement (median; >= 30 for PERF.md)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--impl", default=",".join(IMPLS), help="comma-separated subset of " + ",".join(IMPLS))
    parser.add_argument("--rows", default="", help="comma-separated row indices of the matrix (default: all)")
    args = parser.parse_args(argv)

    import torch

    impls = [i for i in args.impl.split(",") if i]
    for impl in impls:
        if impl not in SETUP:
            parser.error(f"unknown implementation {impl!r}; expected one of {', '.join(IMPLS)}")
    rows = [MATRIX[int(i)] for i in args.rows.split(",")] if args.rows else MATRIX
    flush = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    result = {
        "gpu": torch.cuda.get_device_name(),
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "torch": torch.__version__,
        "runs": args.runs,
        "rows": [],
    }
    print(format_table([]), flush=True)  # the header
    for row in rows:
        records = bench_row(torch, row, impls, args.runs, args.warmup, flush)
        result["rows"].extend(records)
        print(format_table(records).split("\n", 1)[1], flush=True)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out_json}")
    if args.out_png:
        plot(result, args.out_png)
        print(f"wrote {args.out_png}")
    return result


if __name__ == "__main__":
    main()
