"""Random paged MLA decode problems and their fp32 PyTorch reference (GPU tests only)."""

import math

import torch


def make_problem(b=2, s_q=1, h_q=16, h_kv=1, latent_dim=512, page_size=64, dtype=torch.bfloat16, seqlens=None,
                 spare_blocks=3, seed=0, device="cuda"):
    """q [b, s_q, h_q, d_qk], k_cache [num_blocks, page_size, h_kv, d_qk] (N(0, 1) values) and a
    random block table [b, max_blocks_per_seq] int32 (distinct blocks per sequence, shuffled;
    unused entries hold valid ids too) for cache_seqlens `seqlens` [b] int32."""
    d_qk = latent_dim + 64
    seqlens = [1] * b if seqlens is None else list(seqlens)
    assert len(seqlens) == b
    pages = [math.ceil(n / page_size) for n in seqlens]
    max_blocks = max(max(pages), 1) + 1
    num_blocks = sum(pages) + spare_blocks
    g = torch.Generator(device=device).manual_seed(seed)
    perm = torch.randperm(num_blocks, generator=g, device=device).to(torch.int32)
    table = torch.randint(0, num_blocks, (b, max_blocks), generator=g, dtype=torch.int32, device=device)
    start = 0
    for i, n in enumerate(pages):
        table[i, :n] = perm[start:start + n]
        start += n
    return dict(
        q=torch.randn((b, s_q, h_q, d_qk), generator=g, device=device).to(dtype),
        k_cache=torch.randn((num_blocks, page_size, h_kv, d_qk), generator=g, device=device).to(dtype),
        block_table=table,
        cache_seqlens=torch.tensor(seqlens, dtype=torch.int32, device=device),
        head_dim_v=latent_dim,
    )


def reference(q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale=None, causal=False):
    """fp32 attention over the paged cache: out [b, s_q, h_q, head_dim_v] fp32 and lse [b, h_q, s_q]
    (natural log). With causal and s_q > 1 query s sees keys t <= L - s_q + s; a row that sees no
    key gets out = 0 and lse = +inf."""
    b, s_q, h_q, d_qk = q.shape
    page_size, h_kv = k_cache.shape[1], k_cache.shape[2]
    scale = d_qk ** -0.5 if softmax_scale is None else softmax_scale
    out = torch.zeros((b, s_q, h_q, head_dim_v), dtype=torch.float32, device=q.device)
    lse = torch.full((b, h_q, s_q), math.inf, dtype=torch.float32, device=q.device)
    lengths = cache_seqlens.tolist()
    for i in range(b):
        n = lengths[i]
        if n == 0:
            continue
        t = torch.arange(n, device=q.device)
        keys = k_cache[block_table[i, t // page_size].long(), t % page_size].float()  # [n, h_kv, d_qk]
        keys = keys.repeat_interleave(h_q // h_kv, dim=1)  # [n, h_q, d_qk]
        scores = torch.einsum("shd,thd->hst", q[i].float(), keys) * scale  # [h_q, s_q, n]
        if causal and s_q > 1:
            last = n - s_q + torch.arange(s_q, device=q.device)  # last visible key per query
            scores = scores.masked_fill(t[None, None, :] > last[None, :, None], -math.inf)
        row_lse = torch.logsumexp(scores, dim=-1)  # [h_q, s_q]; -inf where nothing is visible
        visible = torch.isfinite(row_lse)
        probs = torch.exp(scores - row_lse[..., None]).nan_to_num(0.0)
        out[i] = torch.einsum("hst,thd->shd", probs, keys[..., :head_dim_v])
        lse[i] = torch.where(visible, row_lse, torch.full_like(row_lse, math.inf))
    return out, lse


def compare(out, lse, ref_out, ref_lse, dtype):
    """Errors of (out, lse) against the reference; asserts the tolerances: out relative L2 error
    < 1e-2 (bf16) / 3e-3 (fp16), |lse error| < 2e-3, lse = +inf and out = 0 exactly where no key
    is visible, no NaN."""
    tol = 1e-2 if dtype == torch.bfloat16 else 3e-3
    out = out.float()
    assert not torch.isnan(out).any(), "NaN in out"
    assert not torch.isnan(lse).any(), "NaN in lse"
    empty = torch.isinf(ref_lse)  # [b, h_q, s_q]
    assert torch.equal(torch.isinf(lse), empty), "lse is +inf exactly where no key is visible"
    assert (lse[empty] > 0).all()
    empty_rows = empty.permute(0, 2, 1)  # [b, s_q, h_q]
    assert (out[empty_rows] == 0).all(), "out is 0 where no key is visible"
    denom = ref_out.norm().item()
    rel = (out - ref_out).norm().item() / denom if denom > 0 else (out - ref_out).norm().item()
    lse_err = (lse[~empty] - ref_lse[~empty]).abs().max().item() if (~empty).any() else 0.0
    assert rel < tol, f"out relative L2 error {rel:.3g} >= {tol}"
    assert lse_err < 2e-3, f"lse max abs error {lse_err:.3g} >= 2e-3"
    return rel, lse_err
