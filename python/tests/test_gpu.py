"""GPU tests: flashmla's decode against an fp32 PyTorch reference over the foundation's shape
matrix, CUDA graph capture and replay with new data, and the example decoder layer.
Skipped, with the reason, without torch, CUDA or libflashmla.so."""

import importlib.util
import math
import zlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
if not torch.cuda.is_available():
    pytest.skip("CUDA is not available (no GPU or driver)", allow_module_level=True)

import flashmla  # noqa: E402
from flash_mla import flash_mla_with_kvcache, get_mla_metadata  # noqa: E402
from mla_reference import compare, make_problem, reference  # noqa: E402

try:
    flashmla.version()
except flashmla.LibraryNotFoundError as e:
    pytest.skip(f"libflashmla.so not available: {e}", allow_module_level=True)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mla_decoder_layer.py"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
VARIABLE = [0, 1, 37, 0, 300, 1025, 64]  # with empty sequences


def decode(t, causal, **kwargs):
    """One step: metadata, then one decode call (FlashMLA's calling convention)."""
    _, s_q, h_q, _ = t["q"].shape
    h_kv = t["k_cache"].shape[2]
    md, ns = get_mla_metadata(t["cache_seqlens"], s_q * h_q // h_kv, h_kv)
    out, lse = flash_mla_with_kvcache(t["q"], t["k_cache"], t["block_table"], t["cache_seqlens"], t["head_dim_v"],
                                      md, ns, causal=causal, **kwargs)
    return out, lse, md, ns


def check(t, out, lse, causal, softmax_scale=None):
    ref_out, ref_lse = reference(t["q"], t["k_cache"], t["block_table"], t["cache_seqlens"], t["head_dim_v"],
                                 softmax_scale, causal)
    assert out.shape == ref_out.shape and out.dtype == t["q"].dtype
    assert lse.shape == ref_lse.shape and lse.dtype == torch.float32
    return compare(out, lse, ref_out, ref_lse, t["q"].dtype)


@pytest.mark.parametrize("latent_dim", [512, 256])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("s_k", ["1", "20", "140", "4096", "var"])
@pytest.mark.parametrize("s_q", [1, 2, 4])
@pytest.mark.parametrize("h_q", [1, 3, 16, 63, 128])
def test_decode_matches_reference(h_q, s_q, s_k, dtype, latent_dim):
    seqlens = VARIABLE if s_k == "var" else [int(s_k)] * 2
    seed = zlib.crc32(f"{h_q}-{s_q}-{s_k}-{dtype}-{latent_dim}".encode())
    t = make_problem(b=len(seqlens), s_q=s_q, h_q=h_q, latent_dim=latent_dim, dtype=DTYPES[dtype], seqlens=seqlens,
                     seed=seed)
    causal = s_q > 1
    out, lse, _, ns = decode(t, causal)
    check(t, out, lse, causal)
    splits = ns.tolist()
    assert splits[0] == 0 and all(a <= b for a, b in zip(splits, splits[1:], strict=False)), f"num_splits {splits}"


@pytest.mark.parametrize("page_size", [16, 32, 128])
@pytest.mark.parametrize("h_kv,h_q", [(1, 8), (2, 32)])
def test_page_sizes_and_kv_heads(page_size, h_kv, h_q):
    t = make_problem(b=3, s_q=2, h_q=h_q, h_kv=h_kv, page_size=page_size, seqlens=[5, 333, 0], seed=page_size + h_kv)
    out, lse, _, _ = decode(t, causal=True)
    check(t, out, lse, causal=True)


def test_strided_inputs_and_explicit_scale():
    t = make_problem(b=3, s_q=2, h_q=16, seqlens=[70, 1, 700], seed=7)
    wide_q = torch.randn(3, 2, 16, 640, device="cuda").to(torch.bfloat16)
    wide_q[..., :576] = t["q"]
    t["q"] = wide_q[..., :576]  # rows 640 elements apart
    wide_table = torch.zeros(3, t["block_table"].shape[1] + 5, dtype=torch.int32, device="cuda")
    wide_table[:, : t["block_table"].shape[1]] = t["block_table"]
    t["block_table"] = wide_table[:, : t["block_table"].shape[1]]
    out, lse, _, _ = decode(t, causal=False, softmax_scale=0.03)
    check(t, out, lse, causal=False, softmax_scale=0.03)


def test_layers_reuse_the_step_schedule():
    t = make_problem(b=4, s_q=1, h_q=16, seqlens=[100, 2000, 0, 513], seed=11)
    out, lse, md, ns = decode(t, causal=False)
    check(t, out, lse, causal=False)
    config = flashmla.scheduled_config(md)
    assert config and config.startswith("decode_")
    for _ in range(3):  # new q and cache contents per layer, same lengths: the schedule is reused
        t["q"] = torch.randn_like(t["q"], dtype=torch.float32).to(torch.bfloat16)
        t["k_cache"] = torch.randn_like(t["k_cache"], dtype=torch.float32).to(torch.bfloat16)
        out, lse = flash_mla_with_kvcache(t["q"], t["k_cache"], t["block_table"], t["cache_seqlens"], 512, md, ns)
        check(t, out, lse, causal=False)


def test_pinned_config():
    t = make_problem(b=2, s_q=1, h_q=64, seqlens=[300, 4000], seed=3)
    chosen = flashmla.select_config(b=2, s_q=1, h_q=64, page_size=64, dtype=torch.bfloat16)
    out, lse, md, _ = decode(t, causal=False, config=chosen)
    assert flashmla.scheduled_config(md) == chosen
    check(t, out, lse, causal=False)


def test_library_errors_surface():
    t = make_problem(b=2, s_q=1, h_q=16, seqlens=[10, 10], seed=5)
    with pytest.raises(flashmla.InvalidArgumentError, match="config"):
        decode(t, causal=False, config="decode_mma-bf16-l512-r64-p32-q16-k64-w4-s2-sm_90a")  # page 32 != 64
    t["cache_seqlens"][1] = 10**6  # beyond the block table: rejected by the host check
    with pytest.raises(flashmla.InvalidArgumentError, match=r"cache_seqlens\[1\] = 1000000 exceeds"):
        decode(t, causal=False)


def test_cpu_tensors_are_rejected():
    t = make_problem(b=1, seqlens=[4], seed=1)
    md, ns = get_mla_metadata(t["cache_seqlens"], 16, 1)
    with pytest.raises(ValueError, match="q must be a CUDA tensor, got device cpu"):
        flash_mla_with_kvcache(t["q"].cpu(), t["k_cache"], t["block_table"], t["cache_seqlens"], 512, md, ns)


def refill(t, seqlens, seed):
    """New q, cache contents, lengths and block table, copied into t's tensors in place."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    num_blocks = t["k_cache"].shape[0]
    for name in ("q", "q2", "k_cache"):
        t[name].copy_(torch.randn(t[name].shape, generator=g, device="cuda"))
    t["cache_seqlens"].copy_(torch.tensor(seqlens, dtype=torch.int32))
    perm = torch.randperm(num_blocks, generator=g, device="cuda").to(torch.int32)
    t["block_table"].copy_(perm[: t["block_table"].numel()].view_as(t["block_table"]))


def graph_problem(b, s_q, h_q):
    t = make_problem(b=b, s_q=s_q, h_q=h_q, seqlens=[700] * b, seed=21, spare_blocks=b)  # 12 blocks per row
    t["q2"] = torch.randn_like(t["q"], dtype=torch.float32).to(t["q"].dtype)
    assert t["block_table"].numel() <= t["k_cache"].shape[0]
    return t


def warm_up(fn):
    """Run fn eagerly on a side stream, as torch recommends before capturing (compiles kernels)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()


def check_two_layers(t, outs, causal):
    out1, lse1, out2, lse2 = outs
    check(t, out1, lse1, causal)
    t2 = dict(t, q=t["q2"])
    check(t2, out2, lse2, causal)


@pytest.mark.parametrize("s_q,h_q", [(1, 16), (2, 128)])
def test_cuda_graph_whole_step(s_q, h_q):
    """get_mla_metadata and two layers captured; replays with new q, cache, lengths and tables."""
    b, causal = 4, s_q > 1
    t = graph_problem(b, s_q, h_q)

    def step():
        md, ns = get_mla_metadata(t["cache_seqlens"], s_q * h_q, 1)
        out1, lse1 = flash_mla_with_kvcache(t["q"], t["k_cache"], t["block_table"], t["cache_seqlens"], 512, md, ns,
                                            causal=causal)
        out2, lse2 = flash_mla_with_kvcache(t["q2"], t["k_cache"], t["block_table"], t["cache_seqlens"], 512, md,
                                            ns, causal=causal)
        return out1, lse1, out2, lse2

    warm_up(step)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = step()
    for trial, seqlens in enumerate([[700, 1, 0, 640], [64, 65, 300, 2], [0, 0, 0, 5], [768, 768, 768, 768]]):
        seqlens = [min(n, t["block_table"].shape[1] * 64) for n in seqlens]
        refill(t, seqlens, seed=100 + trial)
        graph.replay()
        torch.cuda.synchronize()
        check_two_layers(t, outs, causal)


def test_cuda_graph_metadata_made_before_capture():
    """Metadata made outside the capture and already used eagerly (warm-up): the captured call
    must still record the schedule computation, so replays follow the new lengths."""
    b, s_q, h_q = 4, 2, 64
    t = graph_problem(b, s_q, h_q)
    md, ns = get_mla_metadata(t["cache_seqlens"], s_q * h_q, 1)

    def layers():
        out1, lse1 = flash_mla_with_kvcache(t["q"], t["k_cache"], t["block_table"], t["cache_seqlens"], 512, md, ns,
                                            causal=True)
        out2, lse2 = flash_mla_with_kvcache(t["q2"], t["k_cache"], t["block_table"], t["cache_seqlens"], 512, md,
                                            ns, causal=True)
        return out1, lse1, out2, lse2

    warm_up(layers)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = layers()
    for trial, seqlens in enumerate([[1, 768, 3, 0], [400, 20, 700, 768]]):
        refill(t, seqlens, seed=200 + trial)
        graph.replay()
        torch.cuda.synchronize()
        check_two_layers(t, outs, causal=True)


def load_example():
    spec = importlib.util.spec_from_file_location("mla_decoder_layer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("s_q", [1, 2])
def test_example_decoder_layer(s_q):
    example = load_example()
    errors = example.run(batch=3, s_q=s_q, past=[0, 37, 300], seed=s_q)
    assert errors["rel_l2"] < 2e-2, errors
    assert math.isfinite(errors["max_abs"])
