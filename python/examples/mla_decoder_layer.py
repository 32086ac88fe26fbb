"""A small DeepSeek-V2-style MLA attention layer, decoded two ways, and the difference printed.

- reference (non-absorbed, fp32 PyTorch): up-project the cached latents c_kv to per-head
  keys k_nope = c_kv @ W_UK and values v = c_kv @ W_UV, attend with q = [q_nope, q_rope]
  against k = [k_nope, k_rope], project with W_O.
- absorbed (flashmla): fold W_UK into the query, q_latent = q_nope @ W_UK^T, attend over the
  latent cache [c_kv, k_rope] (576 wide; V = c_kv) with flash_mla_with_kvcache, then
  out = o_latent @ W_UV and project with W_O. Same math, no per-head K/V materialised.

Both read the same cached latents (stored in bf16). The decode step appends s_q new tokens to
each sequence's paged cache and attends causally.

Run (CUDA GPU, torch, libflashmla.so):  python python/examples/mla_decoder_layer.py
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too
from flash_mla import flash_mla_with_kvcache, get_mla_metadata  # noqa: E402


@dataclass
class MLAConfig:
    d_model: int = 1024
    n_heads: int = 16
    kv_lora_rank: int = 512  # latent dim: the cache holds it plus the rope part
    qk_nope_dim: int = 128
    qk_rope_dim: int = 64
    v_head_dim: int = 128
    page_size: int = 64
    rope_theta: float = 10000.0


def init_weights(cfg, device, seed=0):
    """fp32 weights; W_UK and W_UV per head, [h, kv_lora_rank, head_dim]."""
    g = torch.Generator(device=device).manual_seed(seed)

    def w(*shape, fan_in):
        return torch.randn(shape, generator=g, device=device) / math.sqrt(fan_in)

    h, r = cfg.n_heads, cfg.kv_lora_rank
    return dict(
        w_q=w(cfg.d_model, h * (cfg.qk_nope_dim + cfg.qk_rope_dim), fan_in=cfg.d_model),
        w_dkv=w(cfg.d_model, r, fan_in=cfg.d_model),
        w_kr=w(cfg.d_model, cfg.qk_rope_dim, fan_in=cfg.d_model),
        kv_norm=1.0 + 0.1 * torch.randn(r, generator=g, device=device),
        w_uk=w(h, r, cfg.qk_nope_dim, fan_in=r),
        w_uv=w(h, r, cfg.v_head_dim, fan_in=r),
        w_o=w(h * cfg.v_head_dim, cfg.d_model, fan_in=h * cfg.v_head_dim),
    )


def rope(x, pos, theta):
    """Rotary embedding (rotate-half) of x [..., s, (h,) d] at integer positions pos [b, s]."""
    d = x.shape[-1]
    freq = theta ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angle = pos.float()[..., None] * freq  # [b, s, d/2]
    if x.dim() == 4:
        angle = angle[:, :, None, :]
    cos, sin = torch.cat([angle.cos()] * 2, dim=-1), torch.cat([angle.sin()] * 2, dim=-1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def project_q(cfg, w, x, pos):
    """x [b, s, d_model] -> q_nope [b, s, h, 128], q_rope [b, s, h, 64]."""
    q = (x @ w["w_q"]).view(*x.shape[:2], cfg.n_heads, cfg.qk_nope_dim + cfg.qk_rope_dim)
    return q[..., : cfg.qk_nope_dim], rope(q[..., cfg.qk_nope_dim:], pos, cfg.rope_theta)


def project_kv(cfg, w, x, pos):
    """x [b, s, d_model] -> the cached row [c_kv (RMS-normed latent), k_rope]: [b, s, 576]."""
    c = x @ w["w_dkv"]
    c = c * torch.rsqrt(c.pow(2).mean(-1, keepdim=True) + 1e-6) * w["kv_norm"]
    return torch.cat([c, rope(x @ w["w_kr"], pos, cfg.rope_theta)], dim=-1)


def write_cache(k_cache, block_table, pos, rows):
    """Store rows [b, s, 576] at token positions pos [b, s] of each sequence's pages."""
    page_size = k_cache.shape[1]
    blocks = block_table.gather(1, (pos // page_size).to(torch.int64)).long()
    k_cache[blocks, pos % page_size, 0] = rows.to(k_cache.dtype)


def read_cache(k_cache, block_table, length):
    """Rows [length, 576] of one sequence, as fp32."""
    t = torch.arange(length, device=k_cache.device)
    return k_cache[block_table[t // k_cache.shape[1]].long(), t % k_cache.shape[1], 0].float()


def layer_reference(cfg, w, x, k_cache, block_table, lengths):
    """Non-absorbed fp32 attention of the new tokens x [b, s_q, d_model] (already in the cache,
    lengths include them). Per sequence: K, V up-projected from the cached latents."""
    s_q, r = x.shape[1], cfg.kv_lora_rank
    outs = []
    for i, n in enumerate(lengths):
        pos = torch.arange(n - s_q, n, device=x.device)[None]
        q_nope, q_rope = project_q(cfg, w, x[i: i + 1], pos)
        rows = read_cache(k_cache, block_table[i], n)  # [n, 576]
        k_nope = torch.einsum("tl,hld->thd", rows[:, :r], w["w_uk"])  # [n, h, 128]
        v = torch.einsum("tl,hld->thd", rows[:, :r], w["w_uv"])  # [n, h, 128]
        k = torch.cat([k_nope, rows[:, None, r:].expand(-1, cfg.n_heads, -1)], dim=-1)
        q = torch.cat([q_nope[0], q_rope[0]], dim=-1)  # [s_q, h, 192]
        scores = torch.einsum("shd,thd->hst", q, k) / math.sqrt(cfg.qk_nope_dim + cfg.qk_rope_dim)
        future = torch.arange(n, device=x.device)[None, :] > pos[0][:, None]  # causal
        probs = torch.softmax(scores.masked_fill(future, -math.inf), dim=-1)
        o = torch.einsum("hst,thd->shd", probs, v)  # [s_q, h, 128]
        outs.append(o.reshape(s_q, -1) @ w["w_o"])
    return torch.stack(outs)


def layer_absorbed(cfg, w, x, k_cache, block_table, cache_seqlens, dtype=torch.bfloat16):
    """Absorbed decode of x [b, s_q, d_model] with flashmla (the new rows are already cached)."""
    b, s_q = x.shape[:2]
    pos = cache_seqlens[:, None].long() - s_q + torch.arange(s_q, device=x.device)
    q_nope, q_rope = project_q(cfg, w, x, pos)
    q_latent = torch.einsum("bshd,hld->bshl", q_nope, w["w_uk"])  # q_nope @ W_UK^T per head: [b, s, h, 512]
    q = torch.cat([q_latent, q_rope], dim=-1).to(dtype)  # [b, s, h, 576]
    md, num_splits = get_mla_metadata(cache_seqlens, s_q * cfg.n_heads, 1)
    o_latent, _ = flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, cfg.kv_lora_rank, md, num_splits,
                                         softmax_scale=(cfg.qk_nope_dim + cfg.qk_rope_dim) ** -0.5, causal=True)
    o = torch.einsum("bshl,hld->bshd", o_latent.float(), w["w_uv"])  # [b, s, h, 128]
    return o.reshape(b, s_q, -1) @ w["w_o"]


def run(batch=4, s_q=1, past=None, seed=0, cfg=None, dtype=torch.bfloat16, device="cuda"):
    """Fill a paged cache with `past` tokens per sequence, decode s_q new ones both ways and
    return the errors of the absorbed layer against the reference."""
    cfg = cfg or MLAConfig()
    past = past or [int(n) for n in torch.randint(0, 1000, (batch,))]
    lengths = [n + s_q for n in past]
    g = torch.Generator(device=device).manual_seed(seed + 1)
    w = init_weights(cfg, device, seed)
    max_blocks = max(math.ceil(n / cfg.page_size) for n in lengths)
    block_table = torch.randperm(batch * max_blocks, generator=g, device=device).to(torch.int32).view(batch, max_blocks)
    k_cache = torch.zeros(batch * max_blocks, cfg.page_size, 1, cfg.kv_lora_rank + cfg.qk_rope_dim, dtype=dtype,
                          device=device)
    for i, n in enumerate(past):  # the cache of earlier tokens
        if n:
            pos = torch.arange(n, device=device)[None]
            x_past = torch.randn(1, n, cfg.d_model, generator=g, device=device)
            write_cache(k_cache, block_table[i: i + 1], pos, project_kv(cfg, w, x_past, pos))
    x = torch.randn(batch, s_q, cfg.d_model, generator=g, device=device)  # the new tokens
    cache_seqlens = torch.tensor(lengths, dtype=torch.int32, device=device)
    pos = cache_seqlens[:, None].long() - s_q + torch.arange(s_q, device=device)
    write_cache(k_cache, block_table, pos, project_kv(cfg, w, x, pos))

    out = layer_absorbed(cfg, w, x, k_cache, block_table, cache_seqlens, dtype)
    ref = layer_reference(cfg, w, x, k_cache, block_table, lengths)
    return dict(max_abs=(out - ref).abs().max().item(), rel_l2=((out - ref).norm() / ref.norm()).item(),
                ref_rms=ref.pow(2).mean().sqrt().item())


if __name__ == "__main__":
    for s_q in (1, 2):
        e = run(batch=4, s_q=s_q, past=[0, 100, 1000, 4000])
        print(f"s_q={s_q}: absorbed (flashmla, bf16 cache) vs non-absorbed fp32: max abs error {e['max_abs']:.3e}, "
              f"relative L2 error {e['rel_l2']:.3e} (output rms {e['ref_rms']:.3f})")
